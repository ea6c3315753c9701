"""What the board tests do with an emulated board (tests/boards/board.py): deploy to it, write
its config, read the release it got, pick results and busy health out of what a test broker
received, and print one figures line."""

import json
import os
import subprocess
import sys
import time
from typing import Dict, List

import pytest

from board import REPO, Board
from broker import Broker

# sshd and the mounts an emulated board needs
NEEDS_ROOT = pytest.mark.skipif(os.geteuid() != 0, reason="boards need root (sshd, mounts)")


@pytest.fixture()
def broker(tmp_path):
    """A test Mosquitto (tests/broker.py) the board's agent publishes to."""
    with Broker(str(tmp_path / "broker")) as b:
        yield b


def deploy(board: Board, *args: str, report: str, timeout: float = 1200) -> tuple:
    """`python -m agent.fleet.deploy` to the board; (CompletedProcess, report JSON or None, seconds)."""
    started = time.monotonic()
    done = subprocess.run(board.deploy_argv(*args) + ["--report-json", report], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True,
                          timeout=timeout)
    seconds = time.monotonic() - started
    data = None
    if os.path.exists(report):
        with open(report) as f:
            data = json.load(f)
    return done, data, seconds


def write_config(path: str, **sections) -> str:
    import yaml
    with open(path, "w") as f:
        yaml.safe_dump(sections, f)
    return path


def release_info(board: Board) -> Dict:
    current = os.readlink(board.host_path("/opt/edgeagent/current"))
    with open(os.path.join(board.host_path("/opt/edgeagent"), current, "release.json")) as f:
        return json.load(f)


def figures_line(board: Board, **figures) -> str:
    """One line the board tests print (pytest -s) and the report quotes."""
    line = "board figures: %s: %s" % (board.name, json.dumps(figures, sort_keys=True))
    sys.stderr.write(line + "\n")
    return line


def faces(messages) -> List:
    """Result messages with at least one face."""
    return [m for m in messages if m.topic.endswith("/results")
            and any(d.get("label") == "face" for d in m.json().get("detections", []))]


def busy(messages) -> List[Dict]:
    """Health payloads of an agent that is processing frames (its fps is windowed)."""
    found = [m.json() for m in messages if m.topic.endswith("/health")]
    return [h for h in found if (h.get("fps") or {}).get("processed", 0) > 0]
