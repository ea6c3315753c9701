"""Interrupted deploys heal: SIGKILLs at random moments, SIGINT/SIGTERM cleanup on the
workstation, stale and busy device locks, and a connection lost during the health gate. Against
a real sshd (tests/sshd.py) with the Type=notify-like systemctl stand-in."""

import glob
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import pytest

from sshd import REPO, current_release, deploy_command, run_deploy, session_sshd
from sshd import stop_session_services


@pytest.fixture(autouse=True)
def _stop_fake_agents():
    """Nothing a test starts outlives it: the fake agents the systemctl stand-in started."""
    yield
    stop_session_services()


def assert_current_is_complete(root):
    link = current_release(root)
    release = os.path.join(root, "opt", "edgeagent", link)
    assert link.startswith("releases/") and os.path.isfile(os.path.join(release, "COMPLETE")), link
    assert os.access(os.path.join(release, "venv", "bin", "edgeagent"), os.X_OK)


@pytest.fixture()
def setup(tmp_path):
    server = session_sshd()
    known_hosts = server.write_known_hosts(str(tmp_path / "kh"), server.ports[:1])
    root = str(tmp_path / "dev")
    model = tmp_path / "m.onnx"
    model.write_text("0")
    args = ["root@127.0.0.1:%d" % server.ports[0], "--remote-root", root, "--model", str(model)]
    # the CLI's TMPDIR, so what it leaves there is visible (short: ssh control socket paths
    # must fit a unix socket address)
    workdir = tempfile.mkdtemp(prefix="eat-", dir="/tmp")
    yield server, known_hosts, root, model, args, workdir
    shutil.rmtree(workdir, ignore_errors=True)
    if os.path.exists(workdir + ".json"):
        os.unlink(workdir + ".json")


def start(server, known_hosts, args, workdir, **kw):
    return subprocess.Popen(deploy_command(server, known_hosts, *args), cwd=REPO,
                            env=dict(os.environ, TMPDIR=workdir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True, **kw)


def finish(server, known_hosts, args, workdir):
    proc = start(server, known_hosts, args + ["--report-json", workdir + ".json"], workdir)
    out, err = proc.communicate(timeout=300)
    with open(workdir + ".json") as f:
        return proc.returncode, json.load(f)["hosts"][0], err


def masters_of(workdir):
    """ssh processes (ControlMaster or clients) using a socket under workdir."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                words = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if words and words[0] == "ssh" and any(workdir in w for w in words):
            found.append(words)
    return found


def helpers_running(root):
    """Device-side helper processes (`python3 - OP JSON`) of this device root."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            with open(cmdline, "rb") as f:
                words = f.read().decode("utf-8", "replace").split("\0")
        except OSError:
            continue
        if len(words) > 3 and words[1] == "-" and root in words[3]:
            found.append(words[:3])
    return found


def test_twenty_sigkills_at_random_moments_each_followed_by_a_deploy_that_succeeds(setup):
    server, known_hosts, root, model, args, workdir = setup
    # given a device deployed with each of three models (so later deploys reuse the releases and
    # the kills land in the switch, the health gate and the rollback as often as in the install)
    args = args + ["--keep", "5"]
    for text in ("a", "b", "c"):
        model.write_text(text)
        code, host, err = finish(server, known_hosts, args, workdir)
        assert code == 0, err
    rng = random.Random(20)
    durations = []
    for attempt in range(20):
        # every fifth a new release, so kills land in its upload and venv install too
        fresh = attempt % 5 == 4
        model.write_text("new-%d" % attempt if fresh else "abc"[attempt % 3])
        # when a deploy is SIGKILLed at a random moment (with its ssh children, or alone)
        proc = start(server, known_hosts, args, workdir, start_new_session=True)
        time.sleep(rng.uniform(0.1, 6.0 if fresh else 2.5))
        if attempt % 2:
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
        proc.communicate()
        assert_current_is_complete(root)
        # then the next deploy succeeds (waiting for the device to finish what it was doing)
        started = time.monotonic()
        code, host, err = finish(server, known_hosts, args, workdir)
        durations.append(time.monotonic() - started)
        assert code == 0 and host["result"] in ("ok", "unchanged", "restarted"), err
        assert_current_is_complete(root)
        assert helpers_running(root) == []
    # and the killed runs' folders were swept by the runs after them
    time.sleep(0.5)
    assert os.listdir(workdir) == []
    print("deploy after a SIGKILL: max %.1f s, mean %.1f s"
          % (max(durations), sum(durations) / len(durations)))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_sigint_and_sigterm_close_masters_and_remove_temp_folders(setup, sig):
    server, known_hosts, root, model, args, workdir = setup
    model.write_text("crash-before-ready:3")        # a long enough gate to land in
    proc = start(server, known_hosts, args, workdir)
    deadline = time.monotonic() + 60
    while not masters_of(workdir) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert masters_of(workdir)
    time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + sig, err
    assert "stopped by signal" in err
    assert os.listdir(workdir) == []
    deadline = time.monotonic() + 10
    while masters_of(workdir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert masters_of(workdir) == []


def hold_lock(root, age_s):
    """A process holding the device's deploy lock, with a holder record `age_s` old."""
    code = ("import fcntl, json, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_CREAT | os.O_RDWR, 0o600)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.ftruncate(fd, 0)\n"
            "boot = open('/proc/sys/kernel/random/boot_id').read().strip()\n"
            "os.write(fd, json.dumps({'pid': os.getpid(), 'boot_id': boot, 'op': 'install',\n"
            "                         'started': time.time() - float(sys.argv[2])}).encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(600)\n")
    os.makedirs(os.path.join(root, "opt", "edgeagent", "releases"), exist_ok=True)
    proc = subprocess.Popen([sys.executable, "-c", code,
                             os.path.join(root, "opt", "edgeagent", ".lock"), str(age_s)],
                            stdout=subprocess.PIPE, universal_newlines=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_stale_lock_is_broken_and_a_busy_one_named(setup):
    server, known_hosts, root, model, args, workdir = setup
    # given a live lock holder that started just now: the deploy waits, then names it
    holder = hold_lock(root, 0)
    try:
        code, host, err = finish(server, known_hosts, args + ["--lock-wait", "1"], workdir)
        assert code == 7 and "another deploy holds" in host["message"]
        assert "pid %d" % holder.pid in host["message"] and "op install" in host["message"]
    finally:
        holder.kill()
        holder.wait()
    # given a holder on this boot that has run far longer than any deploy step (hung)
    holder = hold_lock(root, 7200)
    try:
        code, host, err = finish(server, known_hosts, args, workdir)
        # then it is stopped and the deploy goes through
        assert code == 0, err
        assert holder.wait(10) == -signal.SIGTERM
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_lost_connection_during_the_health_gate_still_rolls_back(setup):
    server, known_hosts, root, model, args, workdir = setup
    model.write_text("good")
    code, good, err = finish(server, known_hosts, args, workdir)
    assert code == 0, err
    # when the connection drops while the device gates a release that fails after 4 s
    model.write_text("crash-before-ready:4")
    proc = start(server, known_hosts, args + ["--report-json", workdir + ".json"], workdir)
    calls = len(server.shim_calls())
    deadline = time.monotonic() + 120
    while "restart edgeagent" not in server.shim_calls()[calls:]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    for socket in glob.glob(os.path.join(workdir, "edgeagent-deploy-*", "c", "*")):
        subprocess.run(["ssh", "-O", "exit", "-o", "ControlPath=" + socket, "x"],
                       stderr=subprocess.DEVNULL)
    out, err = proc.communicate(timeout=300)
    # then the device rolled back on its own, and the workstation reconnected and reports it
    with open(workdir + ".json") as f:
        host = json.load(f)["hosts"][0]
    assert current_release(root) == "releases/" + good["new"]
    assert proc.returncode == 7 and host["result"] == "rolled back", err
    assert "connection lost" in err


def test_install_helper_stops_when_its_workstation_is_killed(setup):
    server, known_hosts, root, model, args, workdir = setup
    model.write_text("fresh")
    # when the deploy (and its ssh) is SIGKILLed while the device helper installs
    proc = start(server, known_hosts, args, workdir, start_new_session=True)
    deadline = time.monotonic() + 120
    while not [h for h in helpers_running(root) if h[2] == "install"]:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    # then the device-side helper notices its output closing and stops (lock free), by itself
    deadline = time.monotonic() + 20
    while helpers_running(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert helpers_running(root) == []
    assert not os.path.lexists(os.path.join(root, "opt", "edgeagent", "current"))
