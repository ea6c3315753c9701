"""TensorRT backend through a fake tensorrt (8.2 bindings API, 10.x named-tensor API) and a fake
pycuda, both in tests/fakes/ with the real module's names and signatures. The fake engine
computes output k = sum(input * 2 + 1) + k, so results are checkable end to end: the input goes
through the backend's pinned buffer, a fake device allocation, the engine and back."""

import logging
import os
import shutil

import numpy as np
import pytest

from agent import backends
from agent.backends.tensorrt import backend as trt_backend
from agent.backends.tensorrt.engine_build import run_build_engine
from agent.errors import BackendUnavailable, ConfigError, ModelError
from agent.backends.tensorrt.progress import BuildProgress, attach_monitor
from fakes.gpu import FACE_ONNX, expected_outputs, forget, install, write_dynamic_onnx

WHERE = "device_profiles/test.yaml"


def options(tmp_path, **extra):
    opts = {"precision": "fp16", "workspace_mb": 64, "dla_core": None, "build_on_start": True,
            "cache_dir": str(tmp_path / "engines")}
    opts.update(extra)
    return opts


def test_infer_returns_what_the_engine_computes(fake, tmp_path):
    trt, _ = fake
    # given: the face detector ONNX, loaded through the backend registry like the service does
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path), WHERE)
    tensor = np.random.RandomState(1).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    # when
    outputs = backend.infer(tensor)
    # then
    assert backend.input_spec.shape == (1, 128, 128, 3) and backend.input_spec.dtype == "float32"
    assert [s.shape for s in backend.output_specs] == [(1, 896, 16), (1, 896, 1)]
    assert [s.name for s in backend.output_specs] == ["regressors", "classificators"]
    for got, want in zip(outputs, expected_outputs(tensor, [(1, 896, 16), (1, 896, 1)])):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # and the named-tensor API is used wherever the engine has it (8.5+), bindings before
    assert backend.api == ("bindings (execute_async_v2)" if trt.__version__.startswith("8.2")
                           else "io-tensors (execute_async_v3)")
    backend.close()


def test_outputs_of_one_call_survive_the_next_call(fake, tmp_path):
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path), WHERE)
    first_in = np.zeros((1, 128, 128, 3), np.float32)
    second_in = np.ones((1, 128, 128, 3), np.float32)
    first = backend.infer(first_in)
    backend.infer(second_in)
    np.testing.assert_allclose(first[0], expected_outputs(first_in, [(1, 896, 16)])[0])
    backend.close()


def test_close_frees_device_buffers_and_lets_go_of_the_context(fake, tmp_path):
    _, driver = fake
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path), WHERE)
    assert driver._fake["memory"]               # input + 2 outputs allocated
    backend.close()
    assert driver._fake["memory"] == {}
    assert driver._fake["retained"] == 0 and driver.Context.get_current() is None


@pytest.mark.parametrize("input_size", [(96, 160), (320, 320)])
def test_dynamic_input_gets_a_profile_and_a_context_shape_for_input_size(fake, tmp_path,
                                                                          input_size):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    backend = backends.load("tensorrt", onnx_path,
                            options(tmp_path, input_size=list(input_size)), WHERE)
    shape = (1, 3) + input_size
    # then: the builder got min = opt = max = the pipeline's size, the context runs at it
    profile = trt._fake["last_config"]._profiles[0]._shapes
    assert profile == {"images": [list(shape)] * 3}
    assert backend.input_spec.shape == shape and backend.output_specs[0].shape == shape
    tensor = np.full(shape, 0.5, np.float32)
    np.testing.assert_allclose(backend.infer(tensor)[0], expected_outputs(tensor, [shape])[0])
    backend.close()


def test_dynamic_model_without_input_size_is_a_config_error(fake, tmp_path):
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    with pytest.raises(ConfigError, match="dynamic height.*input_size"):
        backends.load("tensorrt", onnx_path, options(tmp_path), WHERE)


def test_input_size_contradicting_a_fixed_model_is_a_config_error(fake, tmp_path):
    with pytest.raises(ConfigError, match=r"input_size \[64, 64\] contradicts"):
        backends.load("tensorrt", FACE_ONNX, options(tmp_path, input_size=[64, 64]), WHERE)


def test_prebuilt_engine_file_is_loaded_as_is(fake, tmp_path):
    trt, _ = fake
    built = run_build_engine(FACE_ONNX, options(tmp_path), WHERE)
    engine_file = str(tmp_path / "face.engine")
    shutil.copy(built, engine_file)
    backend = backends.load("tensorrt", engine_file, options(tmp_path), WHERE)
    assert backend.engine_path == engine_file and trt._fake["builds"] == 1
    backend.close()


def test_prebuilt_engine_from_another_tensorrt_is_a_model_error(fake, tmp_path, monkeypatch):
    trt, _ = fake
    engine_file = str(tmp_path / "face.plan")
    shutil.copy(run_build_engine(FACE_ONNX, options(tmp_path), WHERE), engine_file)
    monkeypatch.setattr(trt, "__version__", "7.1.3.0")
    with pytest.raises(ModelError, match="cannot load this engine.*not compatible"):
        backends.load("tensorrt", engine_file, options(tmp_path), WHERE)


def test_onnx_the_parser_rejects_is_a_model_error(fake, tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"this is not protobuf")
    with pytest.raises(ModelError, match="ONNX parser rejects it"):
        backends.load("tensorrt", str(broken), options(tmp_path), WHERE)
    assert not [n for n in os.listdir(str(tmp_path / "engines")) if n.endswith(".engine")]


def test_missing_engine_with_build_on_start_false_names_build_engine(fake, tmp_path):
    with pytest.raises(BackendUnavailable, match="edgeagent build-engine"):
        backends.load("tensorrt", FACE_ONNX, options(tmp_path, build_on_start=False), WHERE)


@pytest.mark.parametrize("precision,flags", [("fp32", []), ("fp16", ["FP16"])])
def test_precision_and_workspace_reach_the_builder_config(fake, tmp_path, precision, flags):
    trt, _ = fake
    run_build_engine(FACE_ONNX, options(tmp_path, precision=precision, workspace_mb=48), WHERE)
    config = trt._fake["last_config"]
    assert sorted(f.name for f in config._flags) == flags
    assert config._workspace() == 48 << 20     # max_workspace_size on 8.2, memory pool on 10


def test_int8_on_a_gpu_without_fast_int8_is_a_config_error(fake, tmp_path):
    trt, _ = fake
    trt._fake["fast_int8"] = False
    with pytest.raises(ConfigError, match="no fast INT8"):
        run_build_engine(FACE_ONNX, options(tmp_path, precision="int8",
                                            calibration_dir=str(tmp_path),
                                            calibration_preprocess=lambda image: image), WHERE)


def test_dla_core_builds_for_dla_with_gpu_fallback(fake, tmp_path):
    trt, _ = fake
    trt._fake["dla_cores"] = 2
    backend = backends.load("tensorrt", FACE_ONNX, options(tmp_path, dla_core=1), WHERE)
    config = trt._fake["last_config"]
    assert config.default_device_type == trt.DeviceType.DLA and config.DLA_core == 1
    assert config.get_flag(trt.BuilderFlag.GPU_FALLBACK) and backend.info.device == "dla:1"
    backend.close()


def test_dla_core_on_a_board_without_dla_is_a_config_error(fake, tmp_path):
    with pytest.raises(ConfigError, match="has 0 DLA cores"):
        backends.load("tensorrt", FACE_ONNX, options(tmp_path, dla_core=0), WHERE)


@pytest.mark.parametrize("bad,message", [
    ({"precison": "fp16"}, "tensorrt.precison: unknown key"),
    ({"precision": "int4"}, "must be one of fp32, fp16, int8"),
    ({"dla_core": 0, "precision": "fp32"}, "DLA runs fp16 or int8 only"),
    ({"input_size": [320]}, "must have exactly 2 items"),
    ({"progress": "yes"}, "must be a function"),
])
def test_bad_options_are_config_errors_naming_the_key(fake, tmp_path, bad, message):
    with pytest.raises(ConfigError, match=message):
        backends.load("tensorrt", FACE_ONNX, options(tmp_path, **bad), WHERE)


def test_build_progress_reaches_the_health_callback(fake, tmp_path, caplog):
    calls = []
    caplog.set_level(logging.INFO, logger="agent.backends.tensorrt.progress")
    run_build_engine(FACE_ONNX, options(tmp_path, progress=lambda *a: calls.append(a)), WHERE)
    states = [c[0] for c in calls]
    assert states[0] == "building_engine" and states[-1] == "engine_ready"
    assert any("parsing done, tactic timing" in c[2] for c in calls)
    assert all(isinstance(c[1], float) and c[1] >= 0 for c in calls)
    assert "building TensorRT engine for face_detection_short_range.onnx" in caplog.text


def test_probe_says_when_tensorrt_is_missing(monkeypatch):
    forget()
    monkeypatch.setitem(__import__("sys").modules, "tensorrt", None)
    reason = trt_backend.probe()
    assert reason.startswith("tensorrt: python module not installed")
    assert "python3-libnvinfer" in reason and "docs/tensorrt.md" in reason


def test_probe_says_when_pycuda_is_missing_with_fake_tensorrt_8x_api(monkeypatch):
    install(monkeypatch, "tensorrt_8x", with_pycuda=False)
    monkeypatch.setitem(__import__("sys").modules, "pycuda", None)
    try:
        assert trt_backend.probe().startswith("tensorrt: pycuda not installed")
    finally:
        forget()


def test_probe_says_when_no_gpu_is_visible(fake):
    _, driver = fake
    driver._fake["devices"] = []
    assert trt_backend.probe() == "tensorrt: no CUDA GPU visible (CUDA reports 0 devices)"


def test_probe_passes_on_the_driver_message_when_cuda_cannot_start(fake):
    _, driver = fake
    driver._fake["init_error"] = "no CUDA-capable device is detected"
    reason = trt_backend.probe()
    assert "cuInit failed: no CUDA-capable device is detected" in reason
    assert "'video' group" in reason


def test_probe_passes_and_runtime_version_names_trt_and_gpu(fake):
    trt, _ = fake
    assert trt_backend.probe() is None
    assert trt_backend.runtime_version() == (
        "TensorRT %s / NVIDIA Tegra X1 / compute capability 5.3" % trt.__version__)


def test_progress_monitor_phases_show_in_the_build_detail_with_fake_tensorrt_10_api(monkeypatch):
    trt, _ = install(monkeypatch, "tensorrt_10")
    try:
        progress = BuildProgress("model.onnx")
        config = trt.Builder(trt.Logger()).create_builder_config()
        monitor = attach_monitor(trt, config, progress)
        progress.phase("parsing done, tactic timing")
        monitor.phase_start("Building engine", None, 7)
        monitor.phase_start("Tactic timing", "Building engine", 40)
        monitor.step_complete("Tactic timing", 11)
        assert config.progress_monitor is monitor
        assert progress.detail() == ("parsing done, tactic timing > Building engine 0/7 > "
                                     "Tactic timing 12/40")
        monitor.phase_finish("Tactic timing")
        assert progress.detail() == "parsing done, tactic timing > Building engine 0/7"
    finally:
        forget()


def test_no_progress_monitor_on_fake_tensorrt_8x_api(monkeypatch):
    trt, _ = install(monkeypatch, "tensorrt_8x")
    try:
        config = trt.Builder(trt.Logger()).create_builder_config()
        assert attach_monitor(trt, config, BuildProgress("model.onnx")) is None
    finally:
        forget()


def test_side_thread_reports_elapsed_time_while_a_build_runs():
    calls = []
    with BuildProgress("model.onnx", lambda *a: calls.append(a), every_s=0.01) as progress:
        progress.phase("parsing done, tactic timing")
        while len([c for c in calls if c[0] == "building_engine"]) < 4:
            pass
    building = [c for c in calls if c[0] == "building_engine"]
    assert building[-1][1] > building[0][1] >= 0            # elapsed grows
    assert building[-1][2] == "parsing done, tactic timing"
    assert calls[-1][0] == "engine_ready"
