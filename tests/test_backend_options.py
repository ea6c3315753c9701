"""Each backend owns its options (default, check, doc line) in one place, and every option
reaches the runtime: ORT's TensorRT/CUDA provider options and intra-op spinning, TFLite's
xnnpack switch on the real interpreter."""

import os
import subprocess
import sys

import numpy as np
import pytest

from agent.backends import onnxruntime as ort_backend
from agent.backends.spec import doc_rows, option_specs, profile_options
from agent.errors import ConfigError
from agent.config.profiles import profile_from_dict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACE_TFLITE = os.path.join(REPO, "models", "face_detection_short_range.tflite")
FACE_ONNX = os.path.join(REPO, "models", "face_detection_short_range.onnx")
GPU_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


def profile(onnxruntime_options):
    return profile_from_dict({"name": "t", "description": "t", "match": {"arch": ["x86_64"]},
                              "backends": [{"onnxruntime": onnxruntime_options}]}, "t.yaml")


def test_docs_table_is_the_backends_own_option_tables():
    with open(os.path.join(REPO, "docs", "profiles.md")) as f:
        text = f.read()
    for row in doc_rows():
        assert row in text


@pytest.mark.parametrize("given,fp16,workspace", [
    ({}, "True", 256 << 20),
    ({"fp16": False}, "False", 256 << 20),
    ({"fp16": True, "trt_workspace_mb": 1024}, "True", 1024 << 20),
])
def test_tensorrt_and_cuda_provider_options_come_from_the_profile(given, fp16, workspace):
    # given a Jetson-like profile listing the GPU providers
    opts = profile(dict(given, providers=GPU_PROVIDERS)).options("onnxruntime")
    opts["cache_dir"] = "/var/lib/edgeagent/engines"
    # when the backend turns them into ORT provider settings
    settings = ort_backend.provider_settings(GPU_PROVIDERS, opts)
    # then the TensorRT EP gets fp16, workspace and its engine cache; CUDA its device
    (trt_name, trt), (cuda_name, cuda), cpu = settings
    assert trt_name == "TensorrtExecutionProvider" and cuda_name == "CUDAExecutionProvider"
    assert trt["trt_fp16_enable"] == fp16 and trt["trt_max_workspace_size"] == workspace
    assert trt["trt_engine_cache_enable"] == "True"
    assert trt["trt_engine_cache_path"] == "/var/lib/edgeagent/engines"
    assert cuda == {"device_id": 0} and trt["device_id"] == 0 and cpu == "CPUExecutionProvider"


@pytest.mark.parametrize("given,entry", [({}, "0"), ({"spinning": False}, "0"),
                                         ({"spinning": True}, "1")])
def test_intra_op_spinning_is_off_unless_the_profile_turns_it_on(given, entry):
    import onnxruntime
    opts = profile(given).options("onnxruntime")
    session = ort_backend.session_options(onnxruntime, opts)
    for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
        assert session.get_session_config_entry(key) == entry


def test_real_session_runs_with_spinning_off():
    backend = ort_backend.OnnxRuntimeBackend.from_options(
        FACE_ONNX, {"threads": 2, "spinning": False}, "t.yaml")
    outputs = backend.infer(np.zeros((1, 128, 128, 3), np.float32))
    assert [o.shape for o in outputs] == [(1, 896, 16), (1, 896, 1)]


@pytest.mark.parametrize("key,bad,message", [
    ("onnxruntime", {"fp16": "yes"}, "onnxruntime.fp16"),
    ("onnxruntime", {"spinning": 1}, "onnxruntime.spinning"),
    ("onnxruntime", {"trt_workspace_mb": 0}, "onnxruntime.trt_workspace_mb"),
    ("onnxruntime", {"fp61": True}, "onnxruntime.fp61: unknown key"),
    ("tflite", {"xnnpack": "on"}, "tflite.xnnpack"),
    ("tensorrt", {"dla_core": True}, "tensorrt.dla_core"),
])
def test_each_option_is_checked_where_the_backend_declares_it(key, bad, message):
    with pytest.raises(ConfigError) as error:
        profile_options(key, bad, "p.yaml", key + ".")
    assert message in str(error.value)


@pytest.mark.parametrize("xnnpack,delegated", [(True, True), (False, False)])
def test_tflite_xnnpack_switch_reaches_the_real_interpreter(xnnpack, delegated):
    from agent.backends.tflite import probe
    if probe() is not None:   # Python 3.6: no TFLite runtime for x86_64 (Makefile test-py36)
        pytest.skip(probe())
    # given the real runtime; it says on stderr when it applies its XNNPACK delegate
    code = ("from agent.backends.tflite import TFLiteBackend; import numpy as np;"
            "b = TFLiteBackend.from_options(%r, {'xnnpack': %r}, 'p.yaml');"
            "b.infer(np.zeros((1, 128, 128, 3), np.float32)); print('ran')" % (FACE_TFLITE, xnnpack))
    done = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=120)
    # then the model runs either way, with XNNPACK only when asked for
    assert done.returncode == 0 and done.stdout.strip() == "ran", done.stderr
    assert ("XNNPACK delegate" in done.stderr) == delegated, done.stderr


@pytest.mark.parametrize("given,level", [
    ({}, "ORT_ENABLE_ALL"), ({"graph_optimization": "disable"}, "ORT_DISABLE_ALL"),
    ({"graph_optimization": "basic"}, "ORT_ENABLE_BASIC"),
    ({"graph_optimization": "extended"}, "ORT_ENABLE_EXTENDED"),
])
def test_graph_optimization_level_comes_from_the_profile(given, level):
    import onnxruntime
    # given a profile's onnxruntime options, checked once by the profile
    opts = profile(given).options("onnxruntime")
    # when the backend builds its SessionOptions
    session = ort_backend.session_options(onnxruntime, opts)
    # then ORT gets the matching level
    assert session.graph_optimization_level == getattr(onnxruntime.GraphOptimizationLevel, level)


def test_graph_optimization_rejects_an_unknown_level():
    with pytest.raises(ConfigError) as error:
        profile({"graph_optimization": "max"})
    assert "onnxruntime.graph_optimization" in str(error.value)


@pytest.mark.parametrize("ops,weights,precision", [
    (["Conv"], ["float32"], "fp32"), (["Conv"], ["float16", "float16"], "fp16"),
    (["QuantizeLinear", "Conv"], ["float32"], "int8"), (["QLinearConv"], [], "int8"),
    (["Conv"], ["int8", "float32"], "int8"), (["MatMulInteger"], ["float32"], "int8"),
])
def test_model_precision_is_what_the_weights_and_ops_compute_in(ops, weights, precision):
    from agent.backends.precision import from_weights
    assert from_weights(ops, weights) == precision


def test_float_model_fed_float_is_fp32_on_cpu_in_its_info():
    backend = ort_backend.OnnxRuntimeBackend.from_options(FACE_ONNX, {}, "t.yaml")
    assert (backend.info.name, backend.info.precision, backend.info.device) == (
        "onnxruntime", "fp32", "cpu")


@pytest.mark.parametrize("size,expected", [((640, 480), (480, 640)), ((320, 320), (320, 320)),
                                           (None, None)])
def test_context_input_size_is_width_height_and_tensorrt_swaps_it_once(size, expected):
    from agent.backends.spec import BackendContext
    from agent.backends.tensorrt.options import TrtOptions
    # given the service's context with the pipeline's (width, height)
    context = BackendContext("p.yaml", "/state/engines", size)
    # when TensorRT's options take it
    opts = TrtOptions.from_context({"precision": "int8"}, context)
    # then the builder gets (height, width), the cache dir and the profile's own option
    assert (opts.input_size, opts.cache_dir, opts.precision, opts.where) == (
        expected, "/state/engines", "int8", "p.yaml")


def test_a_cli_override_goes_through_the_backends_own_check():
    from agent.backends.spec import BackendContext
    from agent.backends.tensorrt.options import TrtOptions
    with pytest.raises(ConfigError) as error:
        TrtOptions.from_context({"precision": "fp8"}, BackendContext("p.yaml"))
    assert "tensorrt.precision" in str(error.value)


@pytest.mark.parametrize("key,given,bad", [
    ("onnxruntime", {"threads": 2}, {"threads": -1}),
    ("tflite", {"xnnpack": False}, {"threads": -1}),
    ("tensorrt", {"workspace_mb": 512}, {"workspace_mb": 0}),
])
def test_options_class_is_made_from_the_table_and_parses_once(key, given, bad):
    from agent.backends import spec
    cls = spec.options_class_of(key)
    # given the class made from the table: its defaults are the table's defaults
    values = spec.as_dict(cls())
    for name, default in spec.defaults(option_specs(key)).items():
        assert values[name] == (list(default) if isinstance(default, tuple) else default)
    # when an instance is parsed again, it comes back as it is (no second check)
    made = spec.parse(cls, given, "p.yaml", key + ".")
    assert spec.parse(cls, made, "p.yaml", key + ".") is made
    assert [getattr(made, name) for name in given] == list(given.values())
    # and a bad value is refused by the option's own check
    with pytest.raises(ConfigError):
        spec.parse(cls, bad, "p.yaml", key + ".")


def test_the_profile_checks_once_and_the_backend_takes_its_options_as_they_are():
    from agent.backends.spec import BackendContext, options_class_of
    from agent.backends.tensorrt.options import TrtOptions
    from agent.config.profiles import profile_from_dict
    # given a profile read once: each backend's options are its frozen class
    read = profile_from_dict({"name": "t", "description": "t", "match": {"arch": ["aarch64"]},
                              "backends": [{"tensorrt": {"precision": "int8", "dla_core": 0}},
                                           {"onnxruntime": {"threads": 3}}]}, "t.yaml")
    typed = read.typed_options("tensorrt")
    assert isinstance(typed, options_class_of("tensorrt"))
    assert isinstance(read.typed_options("tflite"), options_class_of("tflite"))   # not listed
    # when TensorRT takes them with the service's context
    opts = TrtOptions.from_context(typed, BackendContext("t.yaml", "/state/engines", (640, 480)))
    # then the profile's values, the context's parts and the builder's (height, width) arrive
    assert (opts.precision, opts.dla_core, opts.cache_dir, opts.input_size) == (
        "int8", 0, "/state/engines", (480, 640))
    # and ONNX Runtime runs with the instance as it is
    backend = ort_backend.OnnxRuntimeBackend.from_options(
        FACE_ONNX, read.typed_options("onnxruntime"), BackendContext("t.yaml"))
    assert backend.info.name == "onnxruntime"


def test_a_profile_may_not_set_what_the_service_injects():
    # cache_dir is the service's (<state_dir>/engines), not a profile key
    with pytest.raises(ConfigError) as error:
        profile({"cache_dir": "/tmp/engines"})
    assert "onnxruntime.cache_dir: unknown key" in str(error.value)


def test_dla_with_fp32_is_refused_from_a_checked_profile_too():
    from agent.backends.spec import BackendContext, profile_options
    from agent.backends.tensorrt.options import TrtOptions
    typed = profile_options("tensorrt", {"precision": "fp32", "dla_core": 1}, "p.yaml",
                            "tensorrt.")
    with pytest.raises(ConfigError) as error:
        TrtOptions.from_context(typed, BackendContext("p.yaml"))
    assert "DLA runs fp16 or int8 only" in str(error.value)
