"""Bad input through the real CLI (`python -m agent`): one clear line on stderr that names the
file / key / value, a non-zero exit code per error kind, never a traceback. Plus `validate`
and `detect --json` against recorded board files (tests/data/devices/<board>/)."""

import importlib.util
import json
import os
import platform
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import DEVICES, MODELS, ROOT

BLAZEFACE_ONNX = os.path.join(MODELS, "face_detection_short_range.onnx")
BLAZEFACE_TFLITE = os.path.join(MODELS, "face_detection_short_range.tflite")
CONFIG_ERROR, MODEL_ERROR, SOURCE_ERROR, OUTPUT_ERROR = 2, 3, 5, 6
GOOD_DECODER = "decoder: {type: blazeface}\n"


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def garbage(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(os.urandom(4096) + b"not a model")
    return str(path)


def pipeline(tmp_path, models, extra="", decoder=GOOD_DECODER, name="pipe.yaml"):
    lines = ["name: test-pipe", "models:"] + ["  %s: %s" % kv for kv in sorted(models.items())]
    return write(tmp_path, name, "\n".join(lines) + "\n" + decoder + extra)


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


def run_all(argvs, run_agent):
    """Agent processes side by side: each is mostly interpreter start-up and imports."""
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(run_agent, argvs))


@pytest.fixture(scope="module")
def bad_runs(tmp_path_factory, sample_video):
    from conftest import run_agent
    prepared = [bad_run_args(tmp_path_factory.mktemp(c.__name__), sample_video, c) for c in CASES]
    runs = run_all([argv for argv, _, _ in prepared], run_agent)
    return {case.__name__: (run, code, fragments)
            for case, run, (_, code, fragments) in zip(CASES, runs, prepared)}


@pytest.mark.parametrize("case", CASES, ids=[c.__name__ for c in CASES])
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


# ---- validate -------------------------------------------------------------------------------

def test_validate_accepts_a_good_config(tmp_path, run_agent):
    path = write(tmp_path, "config.yaml", "device: {id: cam-7, profile: raspberrypi-4}\n"
                 "pipeline: face-detect\nmqtt: {host: broker.lan, qos: 0}\n"
                 "output: {policy: on_change}\n")
    run = run_agent(["validate", "--config", path])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "%s: ok (pipeline face-detect, device cam-7)" % path


VALIDATE_CASES = [
    ("mqtt: {qos: 3}\n", CONFIG_ERROR, ["{CONFIG}", "mqtt.qos = 3", "must be one of 0, 1, 2"]),
    ("output: {policy: sometimes}\n", CONFIG_ERROR, ["{CONFIG}", "output.policy = 'sometimes'",
                                                     "on_change"]),
    ("device: {id: 'cam/7'}\n", CONFIG_ERROR, ["{CONFIG}", "device.id = 'cam/7'", "topic level"]),
    ("health: {interval_s: 0}\n", CONFIG_ERROR, ["{CONFIG}", "health.interval_s = 0",
                                                 "between 0.5 and 3600"]),
    ("mqtt: [localhost]\n", CONFIG_ERROR, ["{CONFIG}", "mqtt = ['localhost']", "must be a mapping"]),
    ("device: {profile: jetson-nanoo}\n", CONFIG_ERROR, ["'jetson-nanoo'", "jetson-nano,"]),
    ("pipeline: face-detekt\n", CONFIG_ERROR, ["'face-detekt'", "face-detect"]),
    ("pipeline: {PIPE}\n", MODEL_ERROR, ["{PIPE}", "model file(s) not found", "gone.onnx"]),
]


@pytest.fixture(scope="module")
def validate_runs(tmp_path_factory):
    from conftest import run_agent
    prepared = []
    for index, (text, _, fragments) in enumerate(VALIDATE_CASES):
        folder = tmp_path_factory.mktemp("validate%d" % index)
        pipe = pipeline(folder, {"onnxruntime": str(folder / "gone.onnx")})
        path = write(folder, "config.yaml", text.replace("{PIPE}", pipe))
        prepared.append((path, [f.replace("{CONFIG}", path).replace("{PIPE}", pipe)
                                for f in fragments]))
    runs = run_all([["validate", "--config", path] for path, _ in prepared], run_agent)
    return [(run, fragments) for run, (_, fragments) in zip(runs, prepared)]


@pytest.mark.parametrize("index", range(len(VALIDATE_CASES)),
                         ids=[text.split(":")[0] + str(i) for i, (text, _, _) in enumerate(VALIDATE_CASES)])
def test_validate_reports_a_bad_config_on_one_line(validate_runs, index):
    run, fragments = validate_runs[index]
    assert run.returncode == VALIDATE_CASES[index][1] and "Traceback" not in run.stderr, run.stderr
    assert len(run.stderr_lines()) == 1 and run.stdout == ""
    line = run.stderr_lines()[0]
    assert line.startswith("edgeagent validate: ")
    for fragment in fragments:
        assert fragment in line


# ---- detect against recorded boards --------------------------------------------------------

BOARDS = sorted(os.listdir(DEVICES))


def expected_profile(board):
    """Each recorded board folder is named after the profile it must get; a generic PC gets
    the generic profile of the machine running the test."""
    return "generic-" + platform.machine() if board.startswith("generic-") else board


@pytest.fixture(scope="module")
def detect_reports():
    from conftest import run_agent
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        runs = list(pool.map(lambda board: run_agent(["detect", "--json"],
                                                     root=os.path.join(DEVICES, board)), BOARDS))
    return dict(zip(BOARDS, runs))


@pytest.mark.parametrize("board", BOARDS)
def test_detect_json_with_recorded_board_files_reports_the_right_profile(detect_reports, board):
    # given the /proc, /sys and /etc files recorded on a real board
    run = detect_reports[board]
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    # then its profile is chosen for the right reason
    assert report["profile"]["name"] == expected_profile(board)
    reason = report["profile"]["reason"]
    assert ("matches " + board) in reason or "by architecture" in reason
    # and every backend says whether it can run here; the first available of the profile wins
    by_name = {b["name"]: b for b in report["backends"]}
    assert set(by_name) == {"tensorrt", "onnxruntime", "tflite"}
    assert by_name["onnxruntime"]["available"] and by_name["tflite"]["available"]
    usable = [b for b in report["profile"]["backends"] if by_name[b]["available"]]
    assert report["would_use"] == usable[0]


def test_detect_reports_tensorrt_unavailable_with_its_true_reason(detect_reports):
    installed = importlib.util.find_spec("tensorrt") is not None
    for board, run in detect_reports.items():
        tensorrt = [b for b in json.loads(run.stdout)["backends"] if b["name"] == "tensorrt"][0]
        if installed:      # a GPU machine: either it runs, or the reason is not "not installed"
            assert tensorrt["available"] or "not installed" not in tensorrt["reason"]
            continue
        # without the tensorrt module: the import error and where TensorRT comes from
        assert tensorrt["available"] is False and "version" not in tensorrt
        assert "No module named 'tensorrt'" in tensorrt["reason"]
        assert "JetPack" in tensorrt["reason"]


def test_detect_reports_tensorrt_libraries_that_do_not_load_with_a_fake_tensorrt_module(
        tmp_path, run_agent):
    # given a tensorrt package whose native library is missing, as on a half-installed JetPack
    fake = tmp_path / "fake" / "tensorrt"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('libnvinfer.so.8: cannot open shared object file: No such file or directory')\n")
    # when detect runs with it first on the path
    run = run_agent(["detect", "--json"], root=os.path.join(DEVICES, "jetson-nano"),
                    env={"PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), ROOT])})
    # then TensorRT is unavailable for exactly that reason, and the next backend is used
    report = json.loads(run.stdout)
    tensorrt = [b for b in report["backends"] if b["name"] == "tensorrt"][0]
    assert tensorrt["available"] is False
    assert "libraries do not load" in tensorrt["reason"]
    assert "libnvinfer.so.8: cannot open shared object file" in tensorrt["reason"]
    assert report["would_use"] == "onnxruntime"


def test_detect_on_a_recorded_jetson_nano_names_jetpack_and_the_forced_profile(run_agent):
    nano = os.path.join(DEVICES, "jetson-nano")
    report = json.loads(run_agent(["detect", "--json"], root=nano).stdout)
    assert (report["device"]["family"], report["device"]["jetpack"]) == ("jetson", "4.6.1")
    forced = run_agent(["detect", "--json", "--profile", "raspberrypi-4"], root=nano)
    assert json.loads(forced.stdout)["profile"]["name"] == "raspberrypi-4"
    text = run_agent(["detect"], root=nano)
    assert "profile:  jetson-nano" in text.stdout and "tensorrt     unavailable: " in text.stdout


def test_detect_with_unknown_forced_profile_is_one_line(run_agent):
    run = run_agent(["detect", "--profile", "nope"], root=os.path.join(DEVICES, "raspberrypi-5"))
    assert run.returncode == CONFIG_ERROR and "Traceback" not in run.stderr
    assert len(run.stderr_lines()) == 1 and "'nope'" in run.stderr
