"""REAL GPU tests: the pycuda seam of the TensorRT backend on an actual CUDA device.

NOT RUN IN CI: CI has no GPU by design. This module is skipped at collection unless
EDGEAGENT_GPU_TESTS=1 is set — the one place in the suite where a test may skip.
Run it on a Jetson or a GPU machine:

    pip install pycuda                      # builds against the CUDA toolkit (nvcc on PATH)
    EDGEAGENT_GPU_TESTS=1 python -m pytest -q tests/test_cuda_seam_gpu.py

It round-trips preprocessed tensors of the pipelines' shapes through pinned host buffers, device
buffers and a stream (async copies), from the loading thread and from another thread. Where the
real ``tensorrt`` module is importable too, it also builds an fp32 engine from the committed
BlazeFace ONNX and checks its outputs against onnxruntime on the same input.
"""

import os
import threading

import numpy as np
import pytest

if os.environ.get("EDGEAGENT_GPU_TESTS") != "1":
    pytest.skip("GPU tests run only with EDGEAGENT_GPU_TESTS=1 on a machine with a CUDA GPU "
                "(not in CI, which has no GPU by design)", allow_module_level=True)

import skimage.data  # noqa: E402 - after the collection guard

from agent.backends.tensorrt.cuda_seam import PycudaSeam  # noqa: E402
from agent.processing.preprocess import PreprocessConfig, Preprocessor  # noqa: E402
from agent.types import TensorSpec  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACE_ONNX = os.path.join(REPO, "models", "face_detection_short_range.onnx")

# (what, model input spec, preprocess config): a YOLOv8 640 NCHW input and BlazeFace 128 NHWC
PIPELINE_INPUTS = [
    ("yolov8n-640-nchw", TensorSpec("images", (1, 3, 640, 640), "float32"),
     PreprocessConfig(resize="letterbox", color="rgb", std=(255.0,) * 3, layout="NCHW")),
    ("blazeface-128-nhwc", TensorSpec("input", (1, 128, 128, 3), "float32"),
     PreprocessConfig(resize="letterbox", color="rgb", mean=(127.5,) * 3, std=(127.5,) * 3,
                      pad_value=0, layout="NHWC")),
]


@pytest.fixture
def seam():
    seam = PycudaSeam()
    yield seam
    seam.close()


def test_gpu_info_names_a_real_gpu(seam):
    gpu = seam.gpu_info()
    assert gpu.name and gpu.compute_capability >= (5, 3) and gpu.sm_count >= 1


def _round_trip(seam, tensor):
    with seam.active():
        host_in = seam.pagelocked_empty(tensor.shape, tensor.dtype)
        host_out = seam.pagelocked_empty(tensor.shape, tensor.dtype)
        device = seam.mem_alloc(host_in.nbytes)
        stream = seam.stream()
        np.copyto(host_in, tensor)
        host_out[...] = -7
        seam.memcpy_htod_async(device, host_in, stream)
        seam.memcpy_dtoh_async(host_out, device, stream)
        seam.synchronize(stream)
        result = host_out.copy()
        device.free()
    return result


@pytest.mark.parametrize("what,spec,config", PIPELINE_INPUTS, ids=[p[0] for p in PIPELINE_INPUTS])
def test_preprocessed_tensor_round_trips_through_device_memory(seam, what, spec, config):
    tensor = Preprocessor(config, spec)(skimage.data.astronaut()[:, :, ::-1].copy())[0]
    assert tensor.shape == spec.shape and float(tensor.std()) > 0
    np.testing.assert_array_equal(_round_trip(seam, tensor), tensor)


def test_seam_works_from_another_thread(seam):
    tensor = np.random.RandomState(3).rand(1, 3, 320, 320).astype(np.float32)
    results = []
    worker = threading.Thread(target=lambda: results.append(_round_trip(seam, tensor)))
    worker.start()
    worker.join()
    np.testing.assert_array_equal(results[0], tensor)


def test_real_tensorrt_engine_matches_onnxruntime(tmp_path):
    trt = pytest.importorskip("tensorrt", reason="the real tensorrt module is not installed here")
    import onnxruntime
    from agent import backends
    backend = backends.load("tensorrt", FACE_ONNX, {
        "precision": "fp32", "workspace_mb": 512, "cache_dir": str(tmp_path)}, "gpu-test")
    tensor = Preprocessor(PIPELINE_INPUTS[1][2], PIPELINE_INPUTS[1][1])(
        skimage.data.astronaut()[:, :, ::-1].copy())[0]
    got = backend.infer(tensor)
    backend.close()
    session = onnxruntime.InferenceSession(FACE_ONNX, providers=["CPUExecutionProvider"])
    want = session.run(None, {"input": tensor})
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-3, atol=1e-3 * float(np.abs(w).max()))
    assert trt.__version__
