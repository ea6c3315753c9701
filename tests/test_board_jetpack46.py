"""`edgeagent deploy --wheelhouse auto` to an emulated JetPack 4.6 Jetson Nano (tests/boards):
the device's system Python is 3.6.15 with Ubuntu 18.04's pip 9.0.1 (which cannot read the
manylinux2014 wheels it is sent), numpy and cv2 are JetPack's system packages, and the recorded
Nano /etc/nv_tegra_release and device tree make it a Nano to `detect`.

TensorRT is not emulated here: PyPI has none and the fake TensorRT computes a checksum, not
BlazeFace. The Nano profile's next backend, ONNX Runtime (cp36 wheel from the wheelhouse), runs
the face detector; the agent's log says why TensorRT was skipped.

Run: PYTHONPATH=$PWD python -m pytest -q -s tests/test_board_jetpack46.py   (make test-boards)
"""

import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "boards"))

from board import JetsonNano  # noqa: E402
from broker import Subscriber  # noqa: E402
from deploying import (NEEDS_ROOT, broker, busy, deploy, faces,  # noqa: E402,F401 (broker: a fixture)
                       figures_line, release_info, write_config)
from sshd import tree  # noqa: E402

pytestmark = NEEDS_ROOT
RESULTS_DEADLINE_S = 300


@pytest.fixture()
def nano(tmp_path):
    with JetsonNano(str(tmp_path / "nano")) as board:
        yield board


def board_config(path, nano, broker, images, **extra):
    return write_config(path, source="images://%s?loop=1" % images,
                        state_dir=nano.host_path("/var/lib/edgeagent"),
                        mqtt={"host": "127.0.0.1", "port": broker.port},
                        health={"interval_s": 2}, **extra)


def test_deploy_to_jetpack46_nano_runs_face_detect_and_results_reach_mosquitto(
        nano, broker, tmp_path, sample_images_dir):
    # given a Nano on JetPack 4.6 that has never had the agent, and a test broker
    subscriber = Subscriber(broker.port, "edgeagent/nano-1/#", client_id="board-nano")
    config = board_config(str(tmp_path / "config.yaml"), nano, broker, sample_images_dir)
    try:
        # when deploying with a wheelhouse resolved for the device
        done, report, seconds = deploy(nano, "--wheelhouse", "auto", "--pipeline", "face-detect",
                                       "--device-id", "nano-1", "--config", config,
                                       "--health-timeout", "120", "--health-settle", "3",
                                       report=str(tmp_path / "r1.json"))
        assert done.returncode == 0, done.stderr[-4000:] + nano.agent_log()
        host = report["hosts"][0]
        assert host["result"] == "ok"
        # then detect ran in the new release and saw a Nano
        assert "Nano" in host["device"]["device"]["model"]
        assert host["device"]["profile"]["name"] == "jetson-nano"
        # and the release's venv runs the device's Python with the pip from the wheelhouse
        venv = nano.host_path("/opt/edgeagent/current/venv/bin/python")
        pip = subprocess.run([venv, "-m", "pip", "--version"], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
        assert pip.startswith("pip 21.3.1 ") and "python 3.6" in pip
        uploaded = host["uploaded"]
        assert any(u.startswith("wheels/onnxruntime-") and "cp36" in u for u in uploaded)
        assert any(u.startswith("wheels/paho_mqtt-1.6.1-") for u in uploaded)
        assert not any("opencv" in u for u in uploaded)     # JetPack's cv2 serves
        # and the running agent's results arrive at the broker, faces found in the photos
        assert subscriber.wait_for(lambda ms: len(faces(ms)) >= 3, RESULTS_DEADLINE_S), \
            nano.agent_log()
        result = faces(subscriber.received())[0].json()
        assert result["backend"] == "onnxruntime" and result["device_id"] == "nano-1"
        assert subscriber.wait_for(lambda ms: bool(busy(ms)), 120), nano.agent_log()
        health = busy(subscriber.received())[-1]
        first = release_info(nano)

        # when only the config changes (log level) and we deploy again
        config = board_config(str(tmp_path / "config.yaml"), nano, broker, sample_images_dir,
                              log={"level": "debug"})
        again, report2, seconds2 = deploy(nano, "--wheelhouse", "auto", "--pipeline",
                                          "face-detect", "--device-id", "nano-1", "--config",
                                          config, "--health-timeout", "120",
                                          "--health-settle", "3",
                                          report=str(tmp_path / "r2.json"))
        # then it is a new release on the same venv, and only the config travelled
        assert again.returncode == 0, again.stderr[-4000:]
        host2 = report2["hosts"][0]
        second = release_info(nano)
        assert host2["result"] == "ok" and host2["new"] != host["new"]
        assert host2["uploaded"] == ["config.yaml"]
        assert second["venv"] == first["venv"] and second["venv_reused"] is True
        figures_line(nano, first_deploy_s=round(seconds, 1), venv_build_s=first["venv_seconds"],
                     config_only_deploy_s=round(seconds2, 1), fps=health.get("fps"),
                     latency_ms=health.get("latency_ms"), backend=result["backend"])
    finally:
        subscriber.close()


def test_device_without_a_wheel_for_its_backend_gets_one_line_and_is_left_alone(
        nano, tmp_path):
    # given a profile whose only backend (TFLite) has no wheel for CPython 3.6 on x86_64
    profile = tmp_path / "tflite-only.yaml"
    profile.write_text("name: tflite-only\ndescription: TFLite only\n"
                       "backends:\n  - tflite: {threads: 2}\n")
    before = tree(nano.root)
    # when deploying with an auto wheelhouse
    done, report, _ = deploy(nano, "--wheelhouse", "auto", "--profile", str(profile),
                             report=str(tmp_path / "r.json"))
    # then the host failed with one clear line, exit 7, and nothing changed on the device
    host = report["hosts"][0]
    assert done.returncode == 7 and host["result"] == "failed"
    assert "no wheels of tflite-runtime for CPython 3.6 on linux x86_64" in host["message"]
    assert "\n" not in host["message"] and "Traceback" not in done.stderr
    assert tree(nano.root) == before
