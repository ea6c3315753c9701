"""`edgeagent deploy --wheelhouse auto` to an emulated Raspberry Pi 4 on Pi OS Bookworm (64-bit):
a Debian bookworm arm64 userland under qemu-user (tests/boards/pi_root.py, cached), its own sshd
inside the chroot, the recorded Pi 4 device tree. The device has no internet: pip installs the
aarch64 wheels the workstation resolved and pushed. The agent then runs the face detector on
real photos and its results reach a Mosquitto on this machine.

Emulation is slow (BlazeFace ~100 ms per inference, Python start-up seconds): the source is
three photos, and every wait is on a condition with a generous deadline.

Run: PYTHONPATH=$PWD python -m pytest -q -s tests/test_board_pi_bookworm.py   (make test-boards)
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "boards"))

from board import PiBookworm  # noqa: E402
from broker import Subscriber  # noqa: E402
from deploying import (NEEDS_ROOT, broker, busy, deploy, faces,  # noqa: E402,F401 (broker: a fixture)
                       figures_line, release_info, write_config)

pytestmark = NEEDS_ROOT
DEADLINE_S = 900


def test_deploy_to_emulated_pi_bookworm_runs_face_detect_and_results_reach_mosquitto(
        broker, tmp_path, sample_images_dir):
    with PiBookworm(str(tmp_path / "pi"), images=sample_images_dir) as pi:
        subscriber = Subscriber(broker.port, "edgeagent/pi-1/#", client_id="board-pi")
        config = write_config(str(tmp_path / "config.yaml"), source="images:///srv/images?loop=1",
                              state_dir="/var/lib/edgeagent",
                              mqtt={"host": "127.0.0.1", "port": broker.port},
                              health={"interval_s": 5})
        try:
            # when deploying to the Pi with a wheelhouse resolved for it
            done, report, seconds = deploy(pi, "--wheelhouse", "auto", "--pipeline",
                                           "face-detect", "--device-id", "pi-1", "--config",
                                           config, "--health-timeout", "600",
                                           "--health-settle", "5", "--connect-timeout", "60",
                                           report=str(tmp_path / "r.json"), timeout=DEADLINE_S)
            assert done.returncode == 0, done.stderr[-4000:] + pi.agent_log()
            host = report["hosts"][0]
            # then the release detected a Pi 4 and installed aarch64 wheels into its own venv
            assert host["result"] == "ok"
            assert host["device"]["device"]["arch"] == "aarch64"
            assert "Raspberry Pi 4" in host["device"]["device"]["model"]
            assert host["device"]["profile"]["name"] == "raspberrypi-4"
            wheels = [u for u in host["uploaded"] if u.startswith("wheels/")]
            assert any("aarch64" in w for w in wheels) and not any("x86_64" in w for w in wheels)
            assert any(w.startswith("wheels/opencv_python_headless-") for w in wheels)
            # and the agent's face results arrive at the broker on this machine
            assert subscriber.wait_for(lambda ms: len(faces(ms)) >= 2, DEADLINE_S), pi.agent_log()
            result = faces(subscriber.received())[0].json()
            assert result["device_id"] == "pi-1"
            assert subscriber.wait_for(lambda ms: bool(busy(ms)), DEADLINE_S), pi.agent_log()
            health = busy(subscriber.received())[-1]
            info = release_info(pi)
            figures_line(pi, deploy_s=round(seconds, 1), venv_build_s=info["venv_seconds"],
                         backend=result["backend"], fps=health.get("fps"),
                         latency_ms=health.get("latency_ms"),
                         wheel_bytes=sum(os.path.getsize(os.path.join(
                             pi.host_path("/opt/edgeagent/current/wheels"), w[len("wheels/"):]))
                             for w in wheels))
        finally:
            subscriber.close()
