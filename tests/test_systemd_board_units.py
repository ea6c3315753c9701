"""Each board's *effective* unit: systemd/edgeagent.service plus the drop-in `edgeagent unit`
renders from the board's device profile (sandbox:). For every profile it passes
`systemd-analyze verify` and scores an exposure <= 4.0; against the /proc/devices and device
nodes recorded per board (tests/data/PROC_DEVICES.md names the sources) every node the
agent opens there is allowed, matched the way systemd matches DeviceAllow= (char-NAME globbed
against /proc/devices names, or a /dev path)."""

import fnmatch
import os
import re
import shutil
import stat
import subprocess

import pytest

from agent.board.device import detect_device
from agent.config.profiles import list_profiles, load_profile, select_profile
from agent.board.sandbox import BASE_DEVICES, DROP_IN_NAME, render_drop_in
from conftest import ROOT

UNIT = os.path.join(ROOT, "systemd", "edgeagent.service")
DEVICES = os.path.join(ROOT, "tests", "data", "devices")
RECORDED = sorted(d for d in os.listdir(DEVICES)
                  if os.path.isfile(os.path.join(DEVICES, d, "dev-nodes")))
ANALYZE = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
SYSTEM_UNITS = "/usr/lib/systemd/system" if os.path.isdir("/usr/lib/systemd/system") \
    else "/lib/systemd/system"
MAX_EXPOSURE = 4.0
# what the unit allowed before drop-ins: globs guessed from /dev names, not /proc/devices names
OLD_GUESSES = ["char-video4linux", "char-media", "char-drm", "char-nvhost*", "char-nvgpu*",
               "char-nvidia*", "/dev/nvmap", "char-vchiq", "char-dma_heap", "char-rpivid*"]


def device_allow(text):
    return [line.split("=", 1)[1].split()[0] for line in text.splitlines()
            if line.strip().startswith("DeviceAllow=")]


def base_text():
    with open(UNIT) as handle:
        return handle.read()


def char_names(board):
    """major -> names, from the board's recorded /proc/devices (character section)."""
    names, section = {}, None
    with open(os.path.join(DEVICES, board, "proc", "devices")) as handle:
        for line in handle:
            if line.strip().endswith("devices:"):
                section = line.strip()
                continue
            if section == "Character devices:" and line.strip():
                major, name = line.split(None, 1)
                names.setdefault(int(major), []).append(name.strip())
    return names


def nodes(board):
    with open(os.path.join(DEVICES, board, "dev-nodes")) as handle:
        rows = [line.split(None, 2) for line in handle if line.strip() and not line.startswith("#")]
    return [(path, int(mm.split(":")[0]), why.strip()) for path, mm, why in rows]


def allowed(path, major, names, allow):
    """systemd's DeviceAllow= semantics: a path is that node; char-GLOB matches every major
    whose /proc/devices name fits the glob."""
    for spec in allow:
        if spec.startswith("/dev/") and spec == path:
            return True
        if spec.startswith("char-") and any(fnmatch.fnmatchcase(n, spec[5:])
                                            for n in names.get(major, [])):
            return True
    return False


def profile_of(board):
    profile, _ = select_profile(detect_device(os.path.join(DEVICES, board)))
    return profile


def effective_allow(profile):
    return device_allow(base_text()) + device_allow(render_drop_in(profile.name, profile.sandbox))


# ---- every node each recorded board needs is allowed ------------------------------------------

def test_base_unit_lists_exactly_what_the_generator_assumes():
    assert tuple(device_allow(base_text())) == BASE_DEVICES


@pytest.mark.parametrize("board", RECORDED)
def test_every_node_the_agent_opens_on_the_board_is_allowed(board):
    # given the board's recorded /proc/devices and the nodes the agent opens there
    names = char_names(board)
    profile = profile_of(board)
    allow = effective_allow(profile)
    # then the effective unit (shipped unit + the profile's drop-in) allows each of them
    blocked = [(path, why) for path, major, why in nodes(board)
               if not allowed(path, major, names, allow)]
    assert blocked == [], "%s (profile %s) blocks %s" % (board, profile.name, blocked)
    # and never the whole misc major, which nvmap and vcio share with unrelated devices
    assert not any(allowed("/dev/other-misc", 10, names, [spec]) for spec in allow)


@pytest.mark.parametrize("board,node", [("jetson-nano", "/dev/nvhost-gpu"),
                                        ("jetson-xavier-nx", "/dev/nvhost-ctrl-gpu"),
                                        ("jetson-agx-orin", "/dev/nvgpu/igpu0/channel"),
                                        ("raspberrypi-4", "/dev/vcio")])
def test_the_check_fails_for_the_old_guessed_globs(board, node):
    # given the unit as it was: globs from /dev names (nvgpu*), no vcio
    names = char_names(board)
    major = dict((p, m) for p, m, _ in nodes(board))[node]
    # then the GPU (or vcio) node is blocked: the proof above can fail
    assert not allowed(node, major, names, OLD_GUESSES)


# ---- systemd's own checks of every profile's effective unit -----------------------------------

def device_root(tmp_path, drop_in):
    root = str(tmp_path / "root")
    shutil.copytree(SYSTEM_UNITS, root + "/usr/lib/systemd/system", symlinks=True)
    for binary in ("/opt/edgeagent/current/venv/bin/edgeagent", "/bin/kill", "/usr/bin/timeout",
                   "/bin/sh"):
        os.makedirs(os.path.dirname(root + binary), exist_ok=True)
        with open(root + binary, "w") as handle:
            handle.write("#!/bin/sh\n")
        os.chmod(root + binary, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP)
    os.makedirs(root + "/etc/systemd/system/edgeagent.service.d")
    shutil.copy(UNIT, root + "/etc/systemd/system/edgeagent.service")
    with open(root + "/etc/systemd/system/edgeagent.service.d/" + DROP_IN_NAME, "w") as handle:
        handle.write(drop_in)
    return root


def verify(root):
    return subprocess.run([ANALYZE, "verify", "--root=" + root, "--man=no",
                           "/etc/systemd/system/edgeagent.service"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)


def exposure(root):
    result = subprocess.run([ANALYZE, "security", "--offline=true", "--root=" + root,
                             "edgeagent.service"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, universal_newlines=True, timeout=60)
    found = re.search(r"Overall exposure level for edgeagent.service: ([0-9.]+)", result.stdout)
    assert found, result.stdout
    return float(found.group(1)), result.stdout


@pytest.mark.parametrize("name", list_profiles())
def test_effective_unit_of_each_profile_verifies_and_scores_at_most_4(tmp_path, name):
    profile = load_profile(name)
    drop_in = render_drop_in(profile.name, profile.sandbox)
    root = device_root(tmp_path, drop_in)
    result = verify(root)
    assert result.returncode == 0 and result.stdout.strip() == "", result.stdout
    score, report = exposure(root)
    print("%s: exposure %.1f" % (name, score))
    assert score <= MAX_EXPOSURE, report
    # the review read the drop-in: its devices show in the device ACL line
    for device in profile.sandbox.devices:
        assert device in report


@pytest.mark.parametrize("mistake,complaint", [("PrivateTmp=no", "PrivateTmp=nope"),
                                               ("After=nvargus", "Afterr=nvargus")])
def test_verify_reads_the_drop_in_and_catches_its_mistakes(tmp_path, mistake, complaint):
    profile = load_profile("jetson-nano")
    drop_in = render_drop_in(profile.name, profile.sandbox).replace(mistake, complaint, 1)
    assert complaint in drop_in
    assert verify(device_root(tmp_path, drop_in)).stdout.strip() != ""


# ---- CSI: the argus socket at boot and after nvargus-daemon restarts ---------------------------

# ---- the profile section and the command ------------------------------------------------------

@pytest.mark.parametrize("bad,message", [
    ({"devices": ["nvgpu"]}, "sandbox.devices[0] = 'nvgpu': must be char-NAME"),
    ({"devices": ["char-"]}, "sandbox.devices[0]"),
    ({"devices": ["/dev/nv map"]}, "sandbox.devices[0]"),
    ({"argus": "yes"}, "sandbox.argus"),
    ({"device": []}, "sandbox.device: unknown key"),
])
def test_bad_sandbox_sections_are_config_errors_naming_the_key(bad, message):
    from agent.errors import ConfigError
    from agent.config.profiles import profile_from_dict
    with pytest.raises(ConfigError) as error:
        profile_from_dict({"name": "t", "description": "t", "backends": ["tflite"],
                           "sandbox": bad}, "t.yaml")
    assert message in str(error.value)


def test_unit_command_renders_the_detected_boards_drop_in_and_writes_it(tmp_path):
    import sys
    env = dict(os.environ, EDGEAGENT_ROOT=os.path.join(DEVICES, "jetson-nano"))
    printed = subprocess.run([sys.executable, "-m", "agent", "unit"], env=env, timeout=60,
                             stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    assert "DeviceAllow=char-57000000.gpu rw" in printed and "PrivateTmp=no" in printed
    out = subprocess.run([sys.executable, "-m", "agent", "unit", "--profile", "raspberrypi-5",
                          "--output", str(tmp_path / "edgeagent.service.d")], env=env, timeout=60,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    written = tmp_path / "edgeagent.service.d" / DROP_IN_NAME
    assert out.strip() == str(written)
    assert "DeviceAllow=/dev/vcio rw" in written.read_text()
    bad = subprocess.run([sys.executable, "-m", "agent", "unit", "--profile", "nope"], env=env,
                         timeout=60, stderr=subprocess.PIPE, universal_newlines=True)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1
