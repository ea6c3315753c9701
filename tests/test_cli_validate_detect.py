"""`edgeagent validate` and `edgeagent detect` through the real CLI: validate's ok line and its
one-line errors; detect --json with the /proc, /sys and /etc files recorded on real boards
(tests/data/devices/<board>/, via EDGEAGENT_ROOT) picking the right profile; TensorRT reported
unavailable with its true reason; and docs/configuration.md kept true to the code."""

import importlib.util
import json
import os
import platform

import pytest

from conftest import DEVICES, ROOT, write_file as write, write_pipeline as pipeline

CONFIG_ERROR, MODEL_ERROR = 2, 3


# ---- validate -------------------------------------------------------------------------------

def test_validate_accepts_a_good_config(tmp_path, run_agent):
    path = write(tmp_path, "config.yaml", "device: {id: cam-7, profile: raspberrypi-4}\n"
                 "pipeline: face-detect\nmqtt: {host: broker.lan, qos: 0}\n"
                 "output: {policy: on_change}\nstate_dir: %s\n" % (tmp_path / "state"))
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
    ("pipeline: {PIPE}\n", MODEL_ERROR, ["gone.onnx: model file not found", "models: entry"]),
]


@pytest.fixture(scope="module")
def validate_runs(tmp_path_factory, run_agents):
    prepared = []
    for index, (text, _, fragments) in enumerate(VALIDATE_CASES):
        folder = tmp_path_factory.mktemp("validate%d" % index)
        pipe = pipeline(folder, {"onnxruntime": str(folder / "gone.onnx")})
        path = write(folder, "config.yaml", text.replace("{PIPE}", pipe))
        prepared.append((path, [f.replace("{CONFIG}", path).replace("{PIPE}", pipe)
                                for f in fragments]))
    runs = run_agents([["validate", "--config", path] for path, _ in prepared])
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
def detect_reports(run_agents):
    runs = run_agents([["detect", "--json"]] * len(BOARDS),
                      roots=[os.path.join(DEVICES, board) for board in BOARDS])
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


# ---- docs/configuration.md stays true ------------------------------------------------------

def documented_config_example():
    with open(os.path.join(ROOT, "docs", "configuration.md")) as handle:
        text = handle.read()
    section = text.split("## The config file", 1)[1]
    return section.split("```yaml\n", 1)[1].split("```", 1)[0]


def test_documented_config_example_is_valid_and_all_defaults():
    import dataclasses
    import yaml
    from agent.config.agent_config import config_from_dict
    documented = config_from_dict(yaml.safe_load(documented_config_example()), "docs")
    assert dataclasses.replace(documented, path="-") == dataclasses.replace(
        config_from_dict({}, "defaults"), path="-")


def test_every_config_key_is_documented():
    from agent.config import agent_config as config
    from agent.mqtt import settings
    example = documented_config_example()
    keys = (list(config.KEYS) + list(settings.MQTT_KEYS) + list(settings.OUTBOX_KEYS)
            + list(settings.TLS_KEYS) + list(settings.RECONNECT_KEYS))
    missing = [key for key in keys if (key + ":") not in example]
    assert missing == []
