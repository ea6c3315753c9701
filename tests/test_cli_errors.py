"""Bad input to `edgeagent run` through the real CLI (`python -m agent`): one clear line on
stderr that names the file / key / value, the error kind's exit code, never a traceback.
The agent processes run side by side (each is mostly interpreter start-up)."""

import os

import cv2
import numpy as np
import pytest

from conftest import MODELS, write_file as write, write_pipeline as pipeline

BLAZEFACE_ONNX = os.path.join(MODELS, "face_detection_short_range.onnx")
BLAZEFACE_TFLITE = os.path.join(MODELS, "face_detection_short_range.tflite")
CONFIG_ERROR, MODEL_ERROR, SOURCE_ERROR, OUTPUT_ERROR = 2, 3, 5, 6


def garbage(folder, name):
    path = folder / name
    path.write_bytes(os.urandom(4096) + b"not a model")
    return str(path)


# Each case builds its files in tmp_path and returns
# (extra CLI args, exit code, fragments the one error line must contain).
def missing_onnx(tmp_path):
    model = str(tmp_path / "gone.onnx")
    return (["--pipeline", pipeline(tmp_path, {"onnxruntime": model}), "--backend", "onnxruntime"],
            MODEL_ERROR, ["model error", model, "model file not found"])


def missing_tflite(tmp_path):
    model = str(tmp_path / "gone.tflite")
    return (["--pipeline", pipeline(tmp_path, {"tflite": model}), "--backend", "tflite"],
            MODEL_ERROR, ["model error", model, "model file not found"])


def corrupt_onnx(tmp_path):
    model = garbage(tmp_path, "junk.onnx")
    return (["--pipeline", pipeline(tmp_path, {"onnxruntime": model}), "--backend", "onnxruntime"],
            MODEL_ERROR, ["model error", model, "onnxruntime cannot load it"])


def corrupt_tflite(tmp_path):
    model = garbage(tmp_path, "junk.tflite")
    return (["--pipeline", pipeline(tmp_path, {"tflite": model}), "--backend", "tflite"],
            MODEL_ERROR, ["model error", model, "cannot load it as a TFLite model"])


def input_size_contradicts_fixed_model(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "input_size: [320, 320]\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            ["model error", path, "320x320", "128x128"])


def decoder_contradicts_model(tmp_path):
    path = pipeline(tmp_path, {"tflite": BLAZEFACE_TFLITE}, decoder="decoder: {type: yolov8}\n")
    return (["--pipeline", path, "--backend", "tflite"], MODEL_ERROR,
            ["model error", "decoder yolov8 expects", "'regressors' [1, 896, 16]"])


def bad_yaml_config(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {port: 1883\n")
    return ["--config", path], CONFIG_ERROR, ["config error", path, "line 2", "not valid YAML"]


def bad_yaml_pipeline(tmp_path):
    path = write(tmp_path, "pipe.yaml", "name: x\nmodels: [onnxruntime\n")
    return ["--pipeline", path], CONFIG_ERROR, ["config error", path, "not valid YAML"]


def missing_config(tmp_path):
    path = str(tmp_path / "nowhere.yaml")
    return ["--config", path], CONFIG_ERROR, ["config error", path, "cannot read"]


def unknown_config_key(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {host: localhost}\npipline: face-detect\n")
    return ["--config", path], CONFIG_ERROR, [path, "pipline: unknown key", "pipeline"]


def unknown_nested_config_key(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {hots: localhost}\n")
    return ["--config", path], CONFIG_ERROR, [path, "mqtt.hots: unknown key", "host"]


def unknown_pipeline_key(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "colour: rgb\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "colour: unknown key", "preprocess"]


def unknown_preprocess_key(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "preprocess: {colour: rgb}\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "preprocess.colour: unknown key"]


def unknown_profile_key(tmp_path):
    path = write(tmp_path, "myboard.yaml", "name: myboard\ndescription: test board\n"
                 "backends: [onnxruntime]\nbakends: [tflite]\n")
    return ["--profile", path], CONFIG_ERROR, [path, "bakends: unknown key", "backends"]


def wrong_type_config(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {port: eighteen}\n")
    return ["--config", path], CONFIG_ERROR, [path, "mqtt.port = 'eighteen'", "must be an integer"]


def wrong_type_config_bool(tmp_path):
    path = write(tmp_path, "config.yaml", "camera: {loop: sometimes}\n")
    return ["--config", path], CONFIG_ERROR, [path, "camera.loop = 'sometimes'", "true or false"]


def wrong_type_pipeline(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "input_size: big\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "input_size = 'big'", "must be a list"]


def wrong_type_profile(tmp_path):
    path = write(tmp_path, "myboard.yaml", "name: myboard\ndescription: test board\n"
                 "backends: [onnxruntime]\ncamera: {width: wide}\n")
    return ["--profile", path], CONFIG_ERROR, [path, "camera.width = 'wide'"]


def unknown_profile(tmp_path):
    return ["--profile", "jetson-nanoo"], CONFIG_ERROR, ["'jetson-nanoo'", "jetson-nano,"]


def unknown_pipeline(tmp_path):
    return ["--pipeline", "face-detekt"], CONFIG_ERROR, ["'face-detekt'", "face-detect"]


def missing_pipeline_file(tmp_path):
    path = str(tmp_path / "none.yaml")
    return ["--pipeline", path], CONFIG_ERROR, [path, "pipeline file not found"]


def unknown_backend(tmp_path):
    return ["--backend", "tensorflow"], CONFIG_ERROR, ["tensorflow", "unknown backend",
                                                       "onnxruntime, tflite"]


def unknown_backend_in_config(tmp_path):
    path = write(tmp_path, "config.yaml", "backend: openvino\n")
    return ["--config", path], CONFIG_ERROR, [path, "backend = 'openvino'", "tflite"]


def missing_video(tmp_path):
    uri = "file://%s" % (tmp_path / "gone.avi")
    return ["--source", uri], SOURCE_ERROR, ["source error", uri, "file missing"]


def undecodable_video(tmp_path):
    uri = "file://" + garbage(tmp_path, "junk.avi")
    return ["--source", uri], SOURCE_ERROR, ["source error", uri, "cannot decode"]


def unknown_scheme(tmp_path):
    return ["--source", "ftp://cam/1"], SOURCE_ERROR, ["ftp://cam/1", "unknown source scheme 'ftp'"]


def state_dir_is_a_file(tmp_path):
    path = write(tmp_path, "state", "a file, not a folder\n")
    return ["--state-dir", path], OUTPUT_ERROR, ["output error", "state_dir " + path]


def state_dir_under_a_file(tmp_path):
    path = os.path.join(write(tmp_path, "state", "a file\n"), "edgeagent")
    return ["--state-dir", path], OUTPUT_ERROR, ["state_dir " + path, "cannot create it"]


def num_classes_contradicts_model(tmp_path):
    """Found only when the first output arrives, in the inference thread."""
    model = os.path.join(MODELS, "yolov8n_nudenet_320.onnx")
    path = pipeline(tmp_path, {"onnxruntime": model}, "input_size: [320, 320]\n",
                    decoder="decoder: {type: yolov8, num_classes: 80}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            ["model error", "num_classes 80", "[22, 2100]", "decoder.num_classes"])


def corrupt_image_in_folder(tmp_path):
    """Found only when the capture thread reaches the broken file."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    broken = garbage(folder, "b.jpg")
    return (["--source", "images://%s" % folder], SOURCE_ERROR,
            ["source error", broken, "cannot decode image"])


# Mistakes a pipeline thread finds at run time, not at start-up: the same one clear line.
RUN_TIME_CASES = [num_classes_contradicts_model, corrupt_image_in_folder]

CASES = [missing_onnx, missing_tflite, corrupt_onnx, corrupt_tflite,
         input_size_contradicts_fixed_model, decoder_contradicts_model, bad_yaml_config,
         bad_yaml_pipeline, missing_config, unknown_config_key, unknown_nested_config_key,
         unknown_pipeline_key, unknown_preprocess_key, unknown_profile_key, wrong_type_config,
         wrong_type_config_bool, wrong_type_pipeline, wrong_type_profile, unknown_profile,
         unknown_pipeline, missing_pipeline_file, unknown_backend, unknown_backend_in_config,
         missing_video, undecodable_video, unknown_scheme, state_dir_is_a_file,
         state_dir_under_a_file]


def bad_run_args(tmp_path, sample_video, case):
    """(argv, exit code, fragments) for one mistake on top of an otherwise working run."""
    args, code, fragments = case(tmp_path)
    base = ["run", "--no-mqtt", "--log-level", "error", "--max-frames", "2"]
    if "--state-dir" not in args:
        base += ["--state-dir", str(tmp_path / "state-ok")]
    if "--source" not in args:
        base += ["--source", "file://" + sample_video]
    return base + args, code, fragments


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, sample_video, fetched_models, run_agents):
    cases = CASES + RUN_TIME_CASES
    prepared = [bad_run_args(tmp_path_factory.mktemp(c.__name__), sample_video, c) for c in cases]
    runs = run_agents([argv for argv, _, _ in prepared])
    return {case.__name__: (run, code, fragments)
            for case, run, (_, code, fragments) in zip(cases, runs, prepared)}


@pytest.mark.parametrize("case", CASES + RUN_TIME_CASES,
                         ids=[c.__name__ for c in CASES + RUN_TIME_CASES])
def test_bad_input_gives_one_clear_line_and_an_error_exit(bad_runs, case):
    # given one mistake on top of an otherwise working run, when the agent starts
    run, code, fragments = bad_runs[case.__name__]
    # then it stops with the error kind's exit code and exactly one line on stderr, no traceback
    assert "Traceback" not in run.stderr, run.stderr
    assert run.returncode == code, run.stderr
    assert len(run.stderr_lines()) == 1, run.stderr
    line = run.stderr_lines()[0]
    assert line.startswith("edgeagent run: ")
    for fragment in fragments:
        assert fragment in line
    assert run.stdout == ""


def test_default_logging_still_ends_with_the_single_error_line(tmp_path, sample_video, run_agent):
    # given info logging (the default) and a corrupt model
    args, code, fragments = corrupt_onnx(tmp_path)
    run = run_agent(["run", "--no-mqtt", "--state-dir", str(tmp_path / "s"), "--source",
                     "file://" + sample_video] + args)
    # then the log lines come first, the error is one line, last, and there is no traceback
    errors = [line for line in run.stderr_lines() if line.startswith("edgeagent run: ")]
    assert run.returncode == code and "Traceback" not in run.stderr
    assert errors == [run.stderr_lines()[-1]] and fragments[1] in errors[0]
