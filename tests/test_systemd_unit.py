"""systemd/edgeagent.service as shipped: `systemd-analyze verify` finds nothing to say, the
offline security review scores an exposure of at most 4.0, and the unit agrees with the code it
runs (CLI arguments, exit codes, stop and watchdog budgets, credential and state directory).

verify checks that ExecStart's binary exists, so it runs against a throwaway root laid out like
an installed device (/opt/edgeagent/current/venv/bin/edgeagent, /bin/kill, the system's own
units); the shipped file is copied in unchanged. Needs systemd-analyze (apt: systemd)."""

import os
import re
import shutil
import stat
import subprocess
from typing import List, Tuple

import pytest

from agent.cli import build_parser
from agent.config.agent_config import DEFAULT_STATE_DIR, CameraSettings
from agent.errors import ConfigError, MissingDependency, ModelError, SourceError
from agent.daemon.service import DRAIN_S, STOP_WAIT_S
from agent.backends.tensorrt.progress import LOG_EVERY_S
from conftest import ROOT

UNIT = os.path.join(ROOT, "systemd", "edgeagent.service")
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SYSTEM_UNITS = "/usr/lib/systemd/system" if os.path.isdir("/usr/lib/systemd/system") \
    else "/lib/systemd/system"
MAX_EXPOSURE = 4.0


def unit_lines(text: str) -> List[Tuple[str, str, str]]:
    """(section, key, value) for every assignment, repeated keys kept in order."""
    section, lines = "", []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, value = line.split("=", 1)
        lines.append((section, key.strip(), value.strip()))
    return lines


def values(key: str, section: str = "Service") -> List[str]:
    with open(UNIT) as handle:
        return [v for s, k, v in unit_lines(handle.read()) if s == section and k == key]


def value(key: str, section: str = "Service") -> str:
    found = values(key, section)
    assert len(found) == 1, "%s= appears %d times in [%s]" % (key, len(found), section)
    return found[0]


def seconds(text: str) -> float:
    return float(text[:-1]) if text.endswith("s") else float(text)


def device_root(tmp_path, unit_text: str) -> str:
    """A root with the unit installed where the deploy tool puts it and its binaries present."""
    root = str(tmp_path / "root")
    shutil.copytree(SYSTEM_UNITS, root + "/usr/lib/systemd/system", symlinks=True)
    for binary in ("/opt/edgeagent/current/venv/bin/edgeagent", "/bin/kill"):
        os.makedirs(os.path.dirname(root + binary), exist_ok=True)
        with open(root + binary, "w") as handle:
            handle.write("#!/bin/sh\n")
        os.chmod(root + binary, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP)
    os.makedirs(root + "/etc/systemd/system")
    with open(root + "/etc/systemd/system/edgeagent.service", "w") as handle:
        handle.write(unit_text)
    return root


def verify(tmp_path, unit_text: str) -> subprocess.CompletedProcess:
    root = device_root(tmp_path, unit_text)
    return subprocess.run([ANALYZE, "verify", "--root=" + root, "--man=no",
                           "/etc/systemd/system/edgeagent.service"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=60)


def shipped_text() -> str:
    with open(UNIT) as handle:
        return handle.read()


# ---- systemd's own checks ---------------------------------------------------------------

def test_shipped_unit_passes_systemd_analyze_verify_without_a_word(tmp_path):
    result = verify(tmp_path, shipped_text())
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout


@pytest.mark.parametrize("mistake, complaint", [
    ("WatchdogSec=30", "WatchdogSecs=30"),                        # a typo'd directive
    ("Type=notify\n", "Type=notifyy\n"),                          # a bad value
    ("ExecStart=/opt/edgeagent/current", "ExecStart=/opt/edgeagent/missing"),  # no binary
])
def test_verify_in_the_device_root_catches_mistakes(tmp_path, mistake, complaint):
    # the check above can fail: the same root reports each of these
    result = verify(tmp_path, shipped_text().replace(mistake, complaint, 1))
    assert result.stdout.strip() != "", "systemd-analyze verify accepted %r" % complaint


def test_offline_security_review_scores_an_exposure_of_at_most_4():
    result = subprocess.run([ANALYZE, "security", "--offline=true",
                             "--threshold=%d" % (MAX_EXPOSURE * 10), UNIT],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True, timeout=60)
    found = re.search(r"Overall exposure level for edgeagent.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout
    exposure = float(found.group(1))
    print("systemd-analyze security --offline=true: exposure %.1f" % exposure)
    assert exposure <= MAX_EXPOSURE, result.stdout
    assert result.returncode == 0, result.stdout


# ---- the unit agrees with the agent ----------------------------------------------------------

def test_exec_start_is_a_command_line_the_agent_accepts():
    argv = value("ExecStart").split()
    assert argv[0] == "/opt/edgeagent/current/venv/bin/edgeagent"      # the deploy tool's layout
    args = build_parser().parse_args(argv[1:])
    assert args.command == "run" and args.config == "/etc/edgeagent/config.yaml"
    assert value("ExecReload") == "/bin/kill -HUP $MAINPID"


def test_notify_type_with_a_watchdog_the_agent_can_feed():
    assert value("Type") == "notify" and value("NotifyAccess") == "main"
    watchdog_s = seconds(value("WatchdogSec"))
    # a camera stall is detected (default stall_timeout_s) before the watchdog fires, and an
    # engine build during a reload reports progress (a keep-alive) more often than WatchdogSec
    assert watchdog_s > CameraSettings().stall_timeout_s and watchdog_s > LOG_EVERY_S


def test_stop_timeout_covers_finishing_frames_and_draining_the_outbox():
    # frames in flight + outbox drain + `stopped` and disconnect (bounded by the drain again)
    assert seconds(value("TimeoutStopSec")) >= STOP_WAIT_S + 2 * DRAIN_S + 5


def test_restart_on_failure_with_a_start_limit_except_for_mistakes_a_person_must_fix():
    assert value("Restart") == "on-failure"
    assert int(value("StartLimitBurst", "Unit")) >= 3
    assert seconds(value("StartLimitIntervalSec", "Unit")) >= 60
    prevented = set(int(code) for code in value("RestartPreventExitStatus").split())
    assert prevented == {ConfigError.exit_code, ModelError.exit_code, SourceError.exit_code,
                         MissingDependency.exit_code}
    assert 70 not in prevented           # a crashed thread (EXIT_CRASH) is restarted


def test_dedicated_user_state_directory_and_credential_match_the_agent_defaults():
    assert value("User") == "edgeagent" and "video" in value("SupplementaryGroups").split()
    assert os.path.join("/var/lib", value("StateDirectory")) == DEFAULT_STATE_DIR
    assert value("LoadCredential") == "mqtt-password:/etc/edgeagent/credentials/mqtt-password"
    assert value("SetCredential").startswith("mqtt-password:")     # missing file: no failure


def test_cameras_stay_reachable_and_board_devices_come_from_the_drop_in():
    # each board's GPU/VideoCore nodes: tests/test_systemd_board_units.py
    assert values("PrivateDevices") in ([], ["no"])
    assert value("DevicePolicy") == "closed"
    allowed = [entry.split()[0] for entry in values("DeviceAllow")]
    for device in ("char-video4linux", "char-media", "char-drm", "char-dma_heap"):
        assert device in allowed
    assert value("ProtectSystem") == "strict" and value("NoNewPrivileges") == "yes"
    assert values("MemoryDenyWriteExecute") == []    # CUDA and ctypes may need W+X pages
