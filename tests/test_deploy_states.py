"""Release states, rollback targets, refusal after repeated failures, the Type=notify-like health
gate and `unchanged` verification, against a real sshd (tests/sshd.py) whose systemctl stand-in
behaves like systemd with a Type=notify unit (tests/systemctl_shim.py) and runs a fake agent whose
behaviour comes from the release's model file (tests/fake_device_agent.py)."""

import json
import os
import time

import pytest

from sshd import current_release, run_deploy, session_sshd, tree
from sshd import stop_session_services


@pytest.fixture(autouse=True)
def _stop_fake_agents():
    """Nothing a test starts outlives it: the fake agents the systemctl stand-in started."""
    yield
    stop_session_services()


@pytest.fixture()
def server():
    s = session_sshd()
    if os.path.exists(s.fail_flag):
        os.unlink(s.fail_flag)
    yield s
    if os.path.exists(s.fail_flag):
        os.unlink(s.fail_flag)


@pytest.fixture()
def device(server, tmp_path):
    """deploy(model_text, *extra) -> (exit code, host report, stdout) on one fake device."""
    known_hosts = server.write_known_hosts(str(tmp_path / "known_hosts"), server.ports[:1])
    root = str(tmp_path / "dev")
    model = tmp_path / "m.onnx"
    runs = []

    def deploy(text=None, *extra, validate=False):
        if text is not None:
            model.write_text(text)
        report = str(tmp_path / ("r%d.json" % len(runs)))
        started = time.monotonic()
        done, data = run_deploy(server, known_hosts, "root@127.0.0.1:%d" % server.ports[0],
                                "--remote-root", root, "--model", str(model), *extra,
                                report=report, validate=validate)
        runs.append(time.monotonic() - started)
        assert data is not None, done.stderr
        return done.returncode, data["hosts"][0], done.stdout
    deploy.root = root
    deploy.seconds = runs
    return deploy


def tree_but_lock(root):
    """Everything on the device but the lock file (each run records its holder there)."""
    return [entry for entry in tree(root) if entry[0] != "opt/edgeagent/.lock"]


def state_of(root, release):
    with open(os.path.join(root, "opt", "edgeagent", "releases", release, "state.json")) as f:
        return json.load(f)


def test_a_ok_b_bad_c_ok_then_rollback_lands_on_a(device):
    # given A (healthy), B (dies before READY: rolled back) and C (healthy)
    code, a, _ = device("ok-A")
    assert code == 0 and a["result"] == "ok"
    code, b, _ = device("crash-before-ready:0.3")
    assert code == 7 and b["result"] == "rolled back"
    assert current_release(device.root) == "releases/" + a["new"]
    code, c, _ = device("ok-C")
    assert code == 0 and c["result"] == "ok"
    assert [state_of(device.root, r["new"])["state"] for r in (a, b, c)] == [
        "healthy", "failed", "healthy"]
    # when rolling back by hand
    code, back, stdout = device(None, "--rollback")
    # then it skips the failed B and lands on A, gated healthy
    assert code == 0 and back["result"] == "rolled back", back
    assert current_release(device.root) == "releases/" + a["new"]
    assert back["new"] == a["new"] and "healthy" in back["message"]
    print("rollback by hand C -> A: %.1f s" % device.seconds[-1])


def test_restart_failing_like_type_notify_rolls_back_and_gates_the_restored_release(device,
                                                                                    server):
    code, a, _ = device("ok")
    calls = len(server.shim_calls())
    # when the new release's agent dies before READY (systemctl restart fails, as with systemd)
    code, b, stdout = device("crash-before-ready:0.2")
    # then the old release is current again, restarted and gated (restart, then show polls)
    assert code == 7 and b["result"] == "rolled back"
    assert "systemctl restart edgeagent failed" in b["message"] and "back on" in b["message"]
    assert current_release(device.root) == "releases/" + a["new"]
    later = server.shim_calls()[calls:]
    restarts = [i for i, c in enumerate(later) if c == "restart edgeagent"]
    assert len(restarts) == 2 and later[restarts[1] + 1].startswith("show edgeagent")
    assert state_of(device.root, a["new"])["state"] == "healthy"
    print("deploy with rollback (dies before READY): %.1f s" % device.seconds[-1])


def test_gate_rejects_an_agent_that_fails_10_s_after_start(device):
    code, a, _ = device("ok")
    # when the new release's agent fails 10 s after start (a corrupt model loading slowly)
    code, b, _ = device("crash-before-ready:10", "--health-timeout", "60")
    # then it did not pass: rolled back, and it took at least those 10 s (no settle timer win)
    assert code == 7 and b["result"] == "rolled back"
    assert current_release(device.root) == "releases/" + a["new"]
    assert b["seconds"] >= 10


def test_agent_that_never_becomes_ready_times_out_and_rolls_back(device):
    code, a, _ = device("ok")
    code, b, _ = device("never-ready", "--health-timeout", "3")
    assert code == 7 and b["result"] == "rolled back"
    assert "not ready within 3 s" in b["message"] or "restart" in b["message"]
    assert current_release(device.root) == "releases/" + a["new"]


def test_already_failed_unit_returns_at_once_and_a_failing_restore_is_loud(device, server):
    code, a, _ = device("ok")
    # when every unit reports failed (the stand-in's flag) and a new release goes out
    open(server.fail_flag, "w").close()
    code, b, stdout = device("ok-2", "--health-timeout", "60")
    os.unlink(server.fail_flag)
    # then the gate ended at once (not after 60 s), and the restored A failed too: DOWN, exit 8
    assert code == 8 and b["result"] == "DOWN"
    assert "restored release %s failed too" % a["new"] in b["message"]
    assert "DOWN" in stdout and b["seconds"] < 45
    assert state_of(device.root, b["new"])["state"] == "failed"


def test_release_failing_its_gate_n_times_is_refused_unless_forced(device):
    code, a, _ = device("ok")
    code, b, _ = device("crash-before-ready:0", "--attempts", "1")
    assert b["result"] == "rolled back" and state_of(device.root, b["new"])["failures"] == 1
    before = tree_but_lock(device.root)
    # when the same release is deployed again
    code, again, _ = device(None, "--attempts", "1")
    # then it is refused and nothing on the device changed
    assert code == 7 and again["result"] == "refused"
    assert "failed its health gate 1 times" in again["message"] and "--force" in again["message"]
    assert tree_but_lock(device.root) == before
    # and with --force it is tried again (and rolled back again)
    code, forced, _ = device(None, "--attempts", "1", "--force")
    assert forced["result"] == "rolled back"
    assert state_of(device.root, b["new"])["failures"] == 2


def test_rollback_by_hand_whose_target_fails_restores_the_release_it_left(device):
    code, a, _ = device("ok-A")
    code, c, _ = device("ok-C")
    # given A's model on the device turned bad (the release can no longer start)
    model = os.path.join(device.root, "opt", "edgeagent", "releases", a["new"], "models", "m.onnx")
    os.unlink(model)                    # hard-linked from the cache: replace, do not edit
    with open(model, "w") as f:
        f.write("crash-before-ready:0")
    # when rolling back by hand
    code, back, _ = device(None, "--rollback")
    # then the guard saw A fail and went back to C, healthy; the run says it failed
    assert code == 7 and back["result"] == "failed"
    assert "back on %s" % c["new"] in back["message"]
    assert current_release(device.root) == "releases/" + c["new"]
    assert state_of(device.root, a["new"])["state"] == "failed"


def test_unchanged_restarts_a_stopped_service_and_says_so(device, server):
    code, a, _ = device("ok")
    # given the service stopped behind our back
    folder = [s for s in server.services() if s["MainPID"] and
              os.path.exists(os.path.join(device.root, "opt"))]
    import subprocess
    subprocess.run(["systemctl", "stop", "edgeagent"], check=True, env=dict(
        os.environ, PATH=server.shim_dir + ":" + os.environ["PATH"],
        EDGEAGENT_ROOT=device.root))
    assert folder
    # when the same release is deployed again
    code, again, _ = device(None)
    # then it is reported restarted (not silently unchanged), and the service is active
    assert code == 0 and again["result"] == "restarted", again
    assert "inactive" in again["message"]
    active = subprocess.run(["systemctl", "is-active", "edgeagent"], env=dict(
        os.environ, PATH=server.shim_dir + ":" + os.environ["PATH"], EDGEAGENT_ROOT=device.root),
        stdout=subprocess.PIPE, universal_newlines=True)
    assert active.stdout.strip() == "active"


def test_pruning_keeps_the_newest_healthy_release_and_current(device):
    code, a, _ = device("ok-A")
    names = []
    for i in range(3):   # not restarted, so never proven healthy
        code, r, _ = device("ok-%d" % i, "--no-restart", "--keep", "2")
        assert code == 0, r
        names.append(r["new"])
    releases = sorted(os.listdir(os.path.join(device.root, "opt", "edgeagent", "releases")))
    assert a["new"] in releases and names[-1] in releases
    assert names[0] not in releases
    assert current_release(device.root) == "releases/" + names[-1]


def test_health_mqtt_needs_the_agent_publishing_with_advancing_seq(device, tmp_path):
    from broker import Broker
    with Broker(str(tmp_path / "broker")) as broker:
        config = tmp_path / "base.yaml"
        config.write_text("mqtt: {host: 127.0.0.1, port: %d}\n" % broker.port)
        extra = ("--config", str(config), "--device-id", "cam-1",
                 "--health-mqtt", "127.0.0.1:%d" % broker.port, "--health-timeout", "8")
        # given an agent that reports online and publishes numbered messages: healthy
        code, a, _ = device("mqtt-status", *extra)
        assert code == 0 and a["result"] == "ok", a
        # when the next one comes up (READY) and says online, but its seq never advances
        code, b, _ = device("mqtt-silent", *extra)
        # then the workstation's check fails and the device goes back to the first release
        assert code == 7 and b["result"] == "rolled back", b
        assert "no advancing seq" in b["message"]
        assert current_release(device.root) == "releases/" + a["new"]
        assert state_of(device.root, b["new"])["state"] == "failed"


def test_release_that_cannot_run_its_pipeline_never_becomes_current(device, server, tmp_path):
    code, a, _ = device("ok")
    before = tree_but_lock(device.root)
    calls = len(server.shim_calls())
    # when the new release's config names a pipeline the agent does not have
    code, b, stdout = device("ok-2", "--pipeline", "no-such-pipeline", validate=True)
    # then the device's own `edgeagent validate` stopped it before the switch: one line, exit 7,
    # current untouched, the service not restarted
    assert code == 7 and b["result"] == "not runnable", b
    assert "cannot run its pipeline here" in b["message"] and "no-such-pipeline" in b["message"]
    assert "\n" not in b["message"] and "Traceback" not in b["message"]
    assert current_release(device.root) == "releases/" + a["new"]
    assert not [c for c in server.shim_calls()[calls:] if c.startswith("restart")]
    changed = {e[0] for e in set(tree_but_lock(device.root)) ^ set(before)}
    # (only the new, never-current release folder and the upload cache are new)
    assert all(path.startswith("opt/edgeagent/releases/" + b["new"]) or path in (
        "opt/edgeagent/releases", "opt/edgeagent/cache") or
        path.startswith("opt/edgeagent/cache/") for path in changed), changed


HELPER = os.path.join(os.path.dirname(__file__), "..", "agent", "fleet", "deploy", "remote_helper.py")


@pytest.fixture()
def open_dir():
    """A folder under /tmp that another user can reach (pytest's tmp_path is 0700)."""
    import shutil
    import tempfile
    folder = tempfile.mkdtemp(prefix="ea-nosudo-", dir="/tmp")
    os.chmod(folder, 0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_missing_sudo_is_one_clear_line_and_nothing_changes(open_dir):
    # given a device root with a complete release, and the helper run by a non-root user on a
    # machine without sudo (as the issue saw: FileNotFoundError: 'sudo')
    import shutil
    import subprocess
    if shutil.which("sudo"):
        pytest.skip("this machine has sudo; the check is for devices without it")
    import pathlib
    base = pathlib.Path(open_dir)
    root = base / "dev"
    release = root / "opt" / "edgeagent" / "releases" / "r1"
    release.mkdir(parents=True)
    (release / "COMPLETE").write_text("x")
    for path in base.rglob("*"):
        os.chmod(str(path), 0o777)
    args = {"root": str(root), "release": "r1", "service": "edgeagent", "sudo": True,
            "restart": True, "validate": False,
            "health": {"timeout": 5, "settle": 0, "interval": 0.2}}
    with open(HELPER, "rb") as f:
        done = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                               "/usr/bin/python3", "-", "activate", json.dumps(args)],
                              input=f.read(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    last = done.stdout.decode().strip().splitlines()[-1]
    # then: one line saying what and how to fix it, exit 2, and `current` was never created
    assert done.returncode == 2 and last.startswith("EDGEAGENT-ERROR ")
    assert "no sudo" in last and "--no-sudo" in last and "FileNotFoundError" not in last
    assert not os.path.lexists(str(root / "opt" / "edgeagent" / "current"))
