"""Installs the fake tensorrt (8.2, 8.6 or 10.x API) and fake pycuda for one test, fresh each time."""

import os
import sys

FAKES = os.path.dirname(os.path.abspath(__file__))
APIS = ("tensorrt_8x", "tensorrt_86", "tensorrt_10")
API_IDS = ("fake_tensorrt_8x_api", "fake_tensorrt_86_api", "fake_tensorrt_10_api")


def forget() -> None:
    """Drops every fake (and any real) tensorrt/pycuda module so the next import is fresh."""
    for name in list(sys.modules):
        if name.split(".")[0] in ("tensorrt", "pycuda") or name.startswith("_fake_trt_core"):
            del sys.modules[name]


def install(monkeypatch, api: str, with_pycuda: bool = True):
    """(tensorrt, pycuda.driver or None) imported from tests/fakes/."""
    forget()
    if with_pycuda:
        monkeypatch.syspath_prepend(os.path.join(FAKES, "pycuda"))
    monkeypatch.syspath_prepend(os.path.join(FAKES, api))
    import tensorrt
    driver = None
    if with_pycuda:
        import pycuda.driver as driver
    return tensorrt, driver


REPO = os.path.dirname(os.path.dirname(FAKES))
FACE_ONNX = os.path.join(REPO, "models", "face_detection_short_range.onnx")   # [1,128,128,3] NHWC


def write_dynamic_onnx(path: str, doc: str = "") -> str:
    """A real ONNX model, y = x * 2 + 1, with input images[batch, 3, height, width]."""
    from onnx import TensorProto, helper, save
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(
        [helper.make_node("Mul", ["images", "two"], ["doubled"]),
         helper.make_node("Add", ["doubled", "one"], ["out"])],
        "double_plus_one",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, dims)],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0]),
         helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], doc_string=doc)
    model.ir_version = 7
    save(model, path)
    return path


def expected_outputs(tensor, shapes):
    """What the fake engine computes: output k is filled with sum(input * 2 + 1) + k."""
    import numpy as np
    value = float((np.asarray(tensor, np.float64) * 2 + 1).sum())
    return [np.full(shape, value + k, np.float32) for k, shape in enumerate(shapes)]


def face_preprocessor():
    """The BlazeFace pipeline's preprocessing: 128x128 NHWC RGB in [-1, 1], letterboxed."""
    from agent.processing.preprocess import PreprocessConfig, Preprocessor
    from agent.types import TensorSpec
    config = PreprocessConfig(resize="letterbox", color="rgb", mean=(127.5,) * 3,
                              std=(127.5,) * 3, pad_value=0, layout="NHWC", source="test")
    return Preprocessor(config, TensorSpec("input", (1, 128, 128, 3), "float32"))


def as_unprivileged_user(func):
    """Root writes anywhere; run the check as nobody in a forked child to see the real error."""
    if os.geteuid() != 0:
        return func()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, func().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        text = pipe.read().decode()
    os.waitpid(pid, 0)
    return text
