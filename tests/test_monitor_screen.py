"""`edgeagent monitor`'s live screen in tmux: refreshed in place, offline and stale devices
marked, clean exit on Ctrl-C."""

import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from broker import Broker
from conftest import agent_env, ROOT
from monitor_messages import health, publish_all


class Tmux:
    """A private tmux server (its own socket) running one command in a 200x30 pane."""

    def __init__(self, command, status_file):
        self.socket = "edgeagent-test-" + uuid.uuid4().hex[:8]
        self.status_file = status_file
        # The pane's shell ignores Ctrl-C (the command sets its own handler) and writes the
        # command's exit status to a file: tmux 3.3 can leave a pane's exited process unreaped,
        # so #{pane_dead_status} is not always there to read.
        self.tmux("new-session", "-d", "-s", "t", "-x", "200", "-y", "30",
                  "-e", "PYTHONPATH=" + agent_env()["PYTHONPATH"],
                  "trap '' INT; %s; echo $? > %s" % (" ".join(command), status_file))
        self.tmux("set-option", "-t", "t", "remain-on-exit", "on")

    def tmux(self, *args):
        return subprocess.run(["tmux", "-L", self.socket] + list(args), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True, check=True).stdout

    def screen(self):
        """The visible pane and its scroll-back: a redraw in place leaves no history."""
        return self.tmux("capture-pane", "-p", "-S", "-", "-t", "t")

    def wait_screen(self, predicate, timeout_s=20):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            text = self.screen()
            if predicate(text):
                return text
            time.sleep(0.1)
        raise AssertionError("tmux screen never matched:\n" + self.screen())

    def pane(self, fmt):
        return self.tmux("display-message", "-p", "-t", "t", fmt).strip()

    def exit_status(self, timeout_s=20):
        """The command's exit status once it has ended, else None."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if os.path.exists(self.status_file):
                with open(self.status_file) as handle:
                    text = handle.read().strip()
                if text:
                    return int(text)
            time.sleep(0.1)
        return None

    def close(self):
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def rows_by_device(screen):
    return {line.split()[0]: line for line in screen.splitlines() if line.startswith("cam-")}


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux missing: apt install tmux (.ci/run does)")
def test_live_view_in_tmux_refreshes_in_place_marks_offline_and_stale_and_quits_on_ctrl_c(tmp_path):
    # given a broker with three devices: cam-1 live, cam-2 gone offline (its last health is
    # retained), cam-3 online but about to fall silent
    with Broker(tmp_path) as broker:
        now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
        publish_all(broker.port, [
            ("edgeagent/cam-1/status", {"state": "online", "ts": now, "pipeline": "face-detect",
                                        "backend": "tflite"}, True),
            ("edgeagent/cam-2/status", {"state": "offline", "ts": now, "pipeline": "face-detect",
                                        "backend": "onnxruntime"}, True),
            ("edgeagent/cam-2/health", dict(health(), device_id="cam-2", ts=now), True),
            ("edgeagent/cam-3/status", {"state": "online", "ts": now, "pipeline": "yolov8n",
                                        "backend": "onnxruntime"}, True)])
        command = [sys.executable, "-m", "agent", "monitor", "--host", "127.0.0.1", "--port",
                   str(broker.port), "--interval", "0.3", "--stale-after", "6"]
        tmux = Tmux(command, str(tmp_path / "exit-status"))
        try:
            # when cam-1 and cam-3 report health, and only cam-1 keeps reporting
            def beat(devices):
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
                publish_all(broker.port, [("edgeagent/%s/health" % d, dict(health(), device_id=d,
                                           ts=stamp), False) for d in devices])
            tmux.wait_screen(lambda s: "cam-3" in s)
            beat(["cam-1", "cam-3"])
            screen = tmux.wait_screen(lambda s: "14.5" in rows_by_device(s).get("cam-3", ""))
            deadline = time.monotonic() + 30
            while "STALE" not in rows_by_device(screen).get("cam-3", "") and time.monotonic() < deadline:
                beat(["cam-1"])
                time.sleep(0.5)
                screen = tmux.screen()
            # then one screen, redrawn in place: the header once, each device once
            assert screen.count("edgeagent monitor ") == 1, screen
            rows = rows_by_device(screen)
            assert sorted(rows) == ["cam-1", "cam-2", "cam-3"] and screen.count("cam-1 ") == 1
            # cam-1 is current: state, fps, inference ms, stage p95, temperatures, outbox, last seen
            cam1 = rows["cam-1"].split()
            assert cam1[1:4] == ["running", "face-detect", "tflite"], screen
            assert cam1[4:7] == ["14.5", "8.2", "1.9/9.7/0.5"]
            assert cam1[7:11] == ["cpu", "51", "gpu", "48"] and cam1[11] == "3/0", screen
            assert rows["cam-1"].endswith("s ago")
            # cam-2 is OFFLINE and its retained health is not shown as current
            assert rows["cam-2"].split()[1:7] == ["OFFLINE", "face-detect", "onnxruntime", "-", "-", "-"]
            # cam-3 went silent: STALE, its old health hidden
            assert rows["cam-3"].split()[1:7] == ["STALE", "yolov8n", "onnxruntime", "-", "-", "-"]
            assert "2 offline or stale" in screen
            # when Ctrl-C is pressed
            tmux.tmux("send-keys", "-t", "t", "C-c")
            # then it exits 0 at once, without a traceback, leaving the last table on screen
            assert tmux.exit_status() == 0
            final = tmux.screen()
            assert "Traceback" not in final and "KeyboardInterrupt" not in final
            assert "cam-1" in final
        finally:
            tmux.close()
