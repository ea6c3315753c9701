"""Where real TensorRT and CUDA are strict, the fakes are too, and the backend copes:
plugins registered before every deserialize (a cached engine with EfficientNMS must load in a
fresh process, not be rebuilt), CUDA's per-thread context stack, 8.x's refusal of implicit-batch
networks, and each version's own enums. Every test here fails against a kinder fake."""

import threading

import numpy as np
import pytest

from agent import backends
from agent.backends.tensorrt.cuda_seam import PycudaSeam
from agent.errors import ModelError
from agent.backends.tensorrt.runtime import make_logger
from fakes.gpu import expected_outputs, install

WHERE = "device_profiles/test.yaml"


def options(tmp_path):
    return {"precision": "fp16", "workspace_mb": 64, "cache_dir": str(tmp_path / "engines")}


def write_nms_onnx(path):
    """A real ONNX graph whose last op is TensorRT's EfficientNMS_TRT plugin (YOLO exports)."""
    from onnx import TensorProto, helper, save
    graph = helper.make_graph(
        [helper.make_node("Mul", ["images", "two"], ["scaled"]),
         helper.make_node("EfficientNMS_TRT", ["scaled"], ["detections"], score_threshold=0.25)],
        "with_nms",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, [1, 100, 6])],
        [helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    save(model, str(path))
    return str(path)


def test_cached_engine_with_plugin_layers_loads_in_a_fresh_process(fake, tmp_path, monkeypatch):
    trt, _ = fake
    # given an engine with an EfficientNMS plugin layer, built and cached by an earlier start
    model = write_nms_onnx(tmp_path / "yolo_nms.onnx")
    backends.load("tensorrt", model, options(tmp_path), WHERE).close()
    assert trt._fake["builds"] == 1
    # when the agent starts again: a new process, where no plugin is registered yet
    trt, _ = install(monkeypatch, _api_of(trt))
    assert not trt._fake["plugins_registered"]
    backend = backends.load("tensorrt", model, options(tmp_path), WHERE)
    # then the cached engine is deserialized as is (plugins registered first), not rebuilt
    assert trt._fake["builds"] == 0 and trt._fake["plugin_inits"] >= 1
    tensor = np.ones((1, 3, 8, 8), np.float32)
    np.testing.assert_allclose(backend.infer(tensor)[0], expected_outputs(tensor, [(1, 100, 6)])[0])
    backend.close()


def test_fake_runtime_refuses_a_plugin_engine_before_registration(fake, tmp_path):
    trt, _ = fake
    # given the serialized bytes of an engine with a plugin layer
    model = write_nms_onnx(tmp_path / "yolo_nms.onnx")
    backend = backends.load("tensorrt", model, options(tmp_path), WHERE)
    data = open(backend.engine_path, "rb").read()
    backend.close()
    # when a runtime deserializes them with the plugin registry empty (as in a fresh process)
    trt._fake["plugins_registered"] = False
    logger = make_logger(trt)
    engine = trt.Runtime(logger).deserialize_cuda_engine(data)
    # then, like real TensorRT, it refuses them and says which plugin is missing
    assert engine is None
    assert "getPluginCreator could not find plugin: EfficientNMS_TRT" in logger.last_errors()


def test_onnx_with_plugin_ops_needs_registered_plugins_to_parse(fake, tmp_path):
    trt, _ = fake
    model = write_nms_onnx(tmp_path / "yolo_nms.onnx")
    logger = make_logger(trt)
    explicit = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = trt.Builder(logger).create_network(explicit)
    parser = trt.OnnxParser(network, logger)
    # given no plugins registered, the parser cannot import the plugin op
    assert not parser.parse(open(model, "rb").read())
    assert "EfficientNMS_TRT" in str(parser.get_error(0))


@pytest.mark.parametrize("api,accepts", [("tensorrt_8x", False), ("tensorrt_86", False),
                                         ("tensorrt_10", True)])
def test_implicit_batch_network_is_refused_by_the_8x_onnx_parser(monkeypatch, api, accepts):
    from fakes.gpu import FACE_ONNX
    trt, _ = install(monkeypatch, api)
    logger = make_logger(trt)
    # given a network created without EXPLICIT_BATCH (flags 0)
    network = trt.Builder(logger).create_network(0)
    parser = trt.OnnxParser(network, logger)
    # when the ONNX parser reads a real model into it
    parsed = parser.parse(open(FACE_ONNX, "rb").read())
    # then 8.x refuses (explicit batch only), 10.x is always explicit batch
    assert parsed == accepts
    if not accepts:
        assert "EXPLICIT_BATCH" in str(parser.get_error(0))


def test_the_backend_builds_on_every_api_because_it_asks_for_explicit_batch(fake, tmp_path):
    from fakes.gpu import FACE_ONNX
    trt, _ = fake
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path), WHERE)
    flags = trt._fake["last_network_flags"]
    assert flags == (0 if trt.__version__.startswith("10") else 1)
    backend.close()


@pytest.mark.parametrize("api,has,lacks", [
    ("tensorrt_8x", {"EXPLICIT_BATCH", "EXPLICIT_PRECISION"}, {"STRONGLY_TYPED"}),
    ("tensorrt_86", {"EXPLICIT_BATCH", "EXPLICIT_PRECISION"}, {"STRONGLY_TYPED"}),
    ("tensorrt_10", {"EXPLICIT_BATCH", "STRONGLY_TYPED"}, {"EXPLICIT_PRECISION"}),
])
def test_network_creation_flags_are_each_versions_own(monkeypatch, api, has, lacks):
    trt, _ = install(monkeypatch, api)
    names = set(trt.NetworkDefinitionCreationFlag.__members__)
    assert has <= names and not (lacks & names)


def test_86_engine_and_context_have_both_apis(monkeypatch, tmp_path):
    from fakes.gpu import FACE_ONNX
    trt, _ = install(monkeypatch, "tensorrt_86")
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path), WHERE)
    engine = trt.Runtime(make_logger(trt)).deserialize_cuda_engine(
        open(backend.engine_path, "rb").read())
    context = engine.create_execution_context()
    assert engine.num_bindings == engine.num_io_tensors == 3
    assert engine.get_binding_name(0) == engine.get_tensor_name(0) == "input"
    assert hasattr(context, "execute_async_v2") and hasattr(context, "execute_async_v3")
    assert backend.api == "io-tensors (execute_async_v3)"
    backend.close()


def test_cuda_context_stack_is_per_thread(fake):
    _, driver = fake
    seam = PycudaSeam()
    seen = {}

    def other_thread():
        seen["current"] = driver.Context.get_current()
        try:
            seam.mem_alloc(16)
        except driver.LogicError as why:
            seen["error"] = str(why)

    # given the primary context pushed on this thread
    with seam.active():
        assert driver.Context.get_current() is not None
        # when another thread allocates without pushing it
        worker = threading.Thread(target=other_thread)
        worker.start()
        worker.join(10)
    # then, as with real CUDA, nothing is current there and the allocation fails
    assert seen["current"] is None and "invalid device context" in seen["error"]
    seam.close()


def test_backend_loaded_on_one_thread_infers_on_another(fake, tmp_path):
    from fakes.gpu import FACE_ONNX
    # given the backend loaded on the main thread (as the service does)
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path), WHERE)
    tensor = np.zeros((1, 128, 128, 3), np.float32)
    results = []
    # when the pipeline's inference thread calls infer
    worker = threading.Thread(target=lambda: results.append(backend.infer(tensor)))
    worker.start()
    worker.join(30)
    # then it works there: the seam makes the context current on the calling thread
    assert results and np.allclose(results[0][0], expected_outputs(tensor, [(1, 896, 16)])[0])
    backend.close()


def test_corrupt_engine_stays_one_model_error_with_plugins_registered(fake, tmp_path):
    trt, _ = fake
    # given a corrupt .engine file: still one clear model error after plugin registration
    bad = tmp_path / "broken.engine"
    bad.write_bytes(b"not an engine")
    with pytest.raises(ModelError) as error:
        backends.load("tensorrt", str(bad), options(tmp_path), WHERE)
    assert "cannot load this engine" in str(error.value)


def _api_of(trt):
    version = trt.__version__
    return "tensorrt_10" if version.startswith("10") else (
        "tensorrt_86" if version.startswith("8.6") else "tensorrt_8x")
