"""Bad input to `edgeagent run` through the real CLI (`python -m agent`): one clear line on
stderr that names the file / key / value, the error kind's exit code, never a traceback.
`edgeagent validate` with the same arguments gives the same exit code and the same line, and
docs/configuration.md's bad-input table lists every case with both, word for word.
The agent processes run side by side (each is mostly interpreter start-up)."""

import os
import re

import cv2
import numpy as np
import pytest

from conftest import MODELS, ROOT, write_file as write, write_pipeline as pipeline

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


NUDENET = os.path.join(MODELS, "yolov8n_nudenet_320.onnx")    # a trained YOLOv8: 18 classes


def unknown_decoder_key(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX},
                    decoder="decoder: {type: blazeface, score_treshold: 0.5}\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "decoder.score_treshold: unknown key",
                                                "score_threshold"]


def labels_count_differs_from_model_classes(tmp_path):
    labels = ", ".join("class%d" % i for i in range(17))
    path = pipeline(tmp_path, {"onnxruntime": NUDENET},
                    "input_size: [320, 320]\nlabels: [%s]\n" % labels,
                    decoder="decoder: {type: yolov8}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            [path, "labels has 17 labels", "has 18 classes", "[1, 22, 2100]"])


def yolov5_decoder_on_a_yolov8_export(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": NUDENET}, "input_size: [320, 320]\n",
                    decoder="decoder: {type: yolov5}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            [path, "decoder.type yolov5 expects", "YOLOv8's layout", "decoder.type: yolov8"])


def dynamic_model_without_input_size(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": NUDENET}, decoder="decoder: {type: yolov8}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            [path, "dynamic input size", "set input_size: [width, height]"])


def unknown_source_key(tmp_path):
    return (["--source", "synthetic://?colour=red"], SOURCE_ERROR,
            ["unknown query key 'colour' for synthetic:// sources"])


def bad_rtsp_transport(tmp_path):
    return (["--source", "rtsp://127.0.0.1:9/cam?rtsp_transport=quic"], SOURCE_ERROR,
            ["rtsp_transport=quic must be tcp or udp"])


def non_utf8_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"device: {id: caf\xe9}\n")         # Latin-1, as an old editor saves it
    return ["--config", str(path)], CONFIG_ERROR, [str(path), "not UTF-8 text", "0xe9"]


def reconnect_start_above_its_cap(tmp_path):
    path = write(tmp_path, "config.yaml", "camera: {reconnect_initial_s: 5, reconnect_max_s: 2}\n")
    return ["--config", path], CONFIG_ERROR, [path, "camera.reconnect_initial_s = 5.0",
                                              "must not exceed camera.reconnect_max_s"]


# Mistakes found by running a frame: by the blank frame before the first real one
# (num_classes), or when the capture thread reaches a broken picture (validate reads them all).
RUN_TIME_CASES = [num_classes_contradicts_model, corrupt_image_in_folder]

CASES = [missing_onnx, missing_tflite, corrupt_onnx, corrupt_tflite,
         input_size_contradicts_fixed_model, decoder_contradicts_model, bad_yaml_config,
         bad_yaml_pipeline, missing_config, unknown_config_key, unknown_nested_config_key,
         unknown_pipeline_key, unknown_preprocess_key, unknown_profile_key, wrong_type_config,
         wrong_type_config_bool, wrong_type_pipeline, wrong_type_profile, unknown_profile,
         unknown_pipeline, missing_pipeline_file, unknown_backend, unknown_backend_in_config,
         missing_video, undecodable_video, unknown_scheme, state_dir_is_a_file,
         state_dir_under_a_file, unknown_decoder_key, labels_count_differs_from_model_classes,
         yolov5_decoder_on_a_yolov8_export, dynamic_model_without_input_size, unknown_source_key,
         bad_rtsp_transport, non_utf8_config, reconnect_start_above_its_cap]
RUN_ONLY = ("--no-mqtt", "--log-level", "--max-frames")      # flags validate does not take


def bad_run_args(tmp_path, sample_video, case):
    """(argv, exit code, fragments) for one mistake on top of an otherwise working run."""
    args, code, fragments = case(tmp_path)
    base = ["run", "--no-mqtt", "--log-level", "error", "--max-frames", "2"]
    if "--state-dir" not in args:
        base += ["--state-dir", str(tmp_path / "state-ok")]
    if "--source" not in args:
        base += ["--source", "file://" + sample_video]
    return base + args, code, fragments


def validate_args(run_argv):
    """`validate` with the arguments of a `run`, less the flags only `run` has."""
    argv, rest = ["validate"], run_argv[1:]
    while rest:
        flag = rest.pop(0)
        if flag in RUN_ONLY:
            if flag != "--no-mqtt":
                rest.pop(0)
            continue
        argv.append(flag)
    return argv


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, sample_video, fetched_models, run_agents):
    """case name -> (run, exit code, fragments, validate run, folder)."""
    cases = CASES + RUN_TIME_CASES
    folders = [tmp_path_factory.mktemp(c.__name__) for c in cases]
    prepared = [bad_run_args(folder, sample_video, c) for folder, c in zip(folders, cases)]
    argvs = [argv for argv, _, _ in prepared]
    runs = run_agents(argvs + [validate_args(argv) for argv in argvs])
    return {case.__name__: (run, code, fragments, check, str(folder))
            for case, run, check, folder, (_, code, fragments)
            in zip(cases, runs, runs[len(cases):], folders, prepared)}


@pytest.mark.parametrize("case", CASES + RUN_TIME_CASES,
                         ids=[c.__name__ for c in CASES + RUN_TIME_CASES])
def test_bad_input_gives_one_clear_line_and_an_error_exit(bad_runs, case):
    # given one mistake on top of an otherwise working run, when the agent starts
    run, code, fragments = bad_runs[case.__name__][:3]
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


@pytest.mark.parametrize("case", CASES + RUN_TIME_CASES,
                         ids=[c.__name__ for c in CASES + RUN_TIME_CASES])
def test_validate_says_what_run_says_with_the_same_exit_code(bad_runs, case):
    run, code, _, check, _ = bad_runs[case.__name__]
    # when validate gets the same arguments, without opening a camera or running a frame
    assert "Traceback" not in check.stderr, check.stderr
    assert len(check.stderr_lines()) == 1 and check.stdout == "", check.stderr
    # then it stops with run's exit code and run's line
    assert check.returncode == run.returncode == code, (check.stderr, run.stderr)
    assert check.stderr_lines()[0].replace("edgeagent validate: ", "edgeagent run: ", 1) == \
        run.stderr_lines()[0]


TABLE_ROW = re.compile(r"^\| `(\w+)` \| (\d+) \| `(.+)` \|$")


def documented_rows():
    """case -> (exit code, line) from the bad-input table of docs/configuration.md."""
    with open(os.path.join(ROOT, "docs", "configuration.md")) as handle:
        matches = [TABLE_ROW.match(line.rstrip("\n")) for line in handle]
    return {m.group(1): (int(m.group(2)), m.group(3).replace("\\|", "|")) for m in matches if m}


def as_documented(line, folder, sample_video):
    """A real error line with this run's paths written as the table writes them."""
    line = line.replace("edgeagent run: ", "", 1).replace(folder, "<dir>")
    return line.replace(sample_video, "<video>").replace(MODELS, "<models>")


def test_docs_table_gives_every_case_its_exit_code_and_its_line(bad_runs, sample_video):
    rows = documented_rows()
    cases = [c.__name__ for c in CASES + RUN_TIME_CASES]
    assert sorted(rows) == sorted(cases), "docs/configuration.md bad-input table out of date"
    for name in cases:
        run, code, _, _, folder = bad_runs[name]
        doc_code, doc_line = rows[name]
        actual = as_documented(run.stderr_lines()[0], folder, sample_video)
        assert doc_code == code, name
        # a row ending in "..." documents the start of a line whose end comes from a library
        if doc_line.endswith("..."):
            assert actual.startswith(doc_line[:-3]), (name, actual)
        else:
            assert actual == doc_line, (name, actual)
