"""`edgeagent deploy` against a real OpenSSH sshd on 127.0.0.1 (tests/sshd.py). Each fake
device is a remote root folder; systemctl there is a recording shim (systemd does not run here)."""

import json
import os
import stat
import subprocess
import sys

import pytest

from sshd import (DEVICE_PYTHON, current_release, run_deploy, session_sshd, session_wheelhouse,
                  tree)
from sshd import stop_session_services


@pytest.fixture(autouse=True)
def _stop_fake_agents():
    """Nothing a test starts outlives it: the fake agents the systemctl stand-in started."""
    yield
    stop_session_services()


HELPER = os.path.join(os.path.dirname(__file__), "..", "agent", "fleet", "deploy", "remote_helper.py")


@pytest.fixture()
def server():
    s = session_sshd()
    if os.path.exists(s.fail_flag):
        os.unlink(s.fail_flag)
    return s


@pytest.fixture()
def known_hosts(server, tmp_path):
    return server.write_known_hosts(str(tmp_path / "known_hosts"), server.ports[:1])


def spec(server, n=0):
    return "root@127.0.0.1:%d" % server.ports[n]


def write(path, text):
    path.write_text(text)
    return str(path)


def test_deploy_with_recording_systemctl_shim_installs_switches_and_runs_detect(
        server, known_hosts, tmp_path):
    # given a fresh device root and one model
    root = tmp_path / "dev"
    model = write(tmp_path / "face.onnx", "model-1")
    calls_before = len(server.shim_calls())
    # when deploying
    done, report = run_deploy(server, known_hosts, spec(server), "--remote-root", str(root),
                              "--model", model, "--device-id", "dev-1", "--pipeline",
                              "face-detect", report=str(tmp_path / "r.json"))
    # then the host is ok, current points at a complete release with the model and config
    assert done.returncode == 0, done.stderr
    host = report["hosts"][0]
    assert host["result"] == "ok" and host["old"] is None
    release = root / "opt" / "edgeagent" / current_release(str(root))
    assert current_release(str(root)) == "releases/" + host["new"]
    assert (release / "COMPLETE").is_file()
    assert (release / "models" / "face.onnx").read_text() == "model-1"
    config = (root / "etc" / "edgeagent" / "config.yaml").read_text()
    assert "id: dev-1" in config and "pipeline: face-detect" in config
    # and the release's own venv ran `edgeagent detect --json` (recorded) and still runs it
    assert host["device"]["device"]["arch"] == os.uname().machine
    again = subprocess.run([str(release / "venv" / "bin" / "edgeagent"), "detect", "--json"],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True)
    assert json.loads(again.stdout)["device"]["arch"] == os.uname().machine
    # and the board's drop-in (its device nodes, rendered by the release's `edgeagent unit`)
    # sits beside the unit
    drop_in = root / "etc" / "systemd" / "system" / "edgeagent.service.d" / "50-board.conf"
    assert "[Service]" in drop_in.read_text() and "edgeagent unit" in drop_in.read_text()
    # and the service was restarted and checked through systemctl
    # (a first deploy installs the shipped unit, hence the daemon-reload)
    calls = server.shim_calls()[calls_before:]
    assert calls[:2] == ["daemon-reload", "restart edgeagent"]
    assert calls[2].startswith("show edgeagent -p ActiveState")
    assert any(s["ActiveState"] == "active" and s["folder"].endswith("-edgeagent") and s["MainPID"]
               for s in server.services())
    assert "ok" in done.stdout and host["new"] in done.stdout


def test_second_deploy_uploads_only_the_changed_model(server, known_hosts, tmp_path):
    # given a device deployed with two models
    root = str(tmp_path / "dev")
    a, b = write(tmp_path / "a.onnx", "a-1"), write(tmp_path / "b.onnx", "b-1")
    args = (spec(server), "--remote-root", root, "--model", a, "--model", b)
    first, r1 = run_deploy(server, known_hosts, *args, report=str(tmp_path / "r1.json"))
    assert first.returncode == 0, first.stderr
    uploaded = r1["hosts"][0]["uploaded"]
    wheels = [u for u in uploaded if u.startswith("wheels/")]
    assert len(wheels) == 1
    assert sorted(uploaded) == sorted(["config.yaml", "models/a.onnx", "models/b.onnx",
                                       "systemd/edgeagent.service"] + wheels)
    # when one model changes and we deploy again
    write(tmp_path / "b.onnx", "b-2")
    second, r2 = run_deploy(server, known_hosts, *args, report=str(tmp_path / "r2.json"))
    # then only that model travelled, and the new release has it
    assert second.returncode == 0, second.stderr
    host = r2["hosts"][0]
    assert host["uploaded"] == ["models/b.onnx"]
    assert "models/a.onnx" in host["reused"] and "config.yaml" in host["reused"]
    assert host["old"] == r1["hosts"][0]["new"] and host["new"] != host["old"]
    assert "upload: 1 files" in second.stderr
    current = os.path.join(root, "opt", "edgeagent", current_release(root))
    with open(os.path.join(current, "models", "b.onnx")) as f:
        assert f.read() == "b-2"


def test_same_release_again_is_unchanged_and_not_restarted(server, known_hosts, tmp_path):
    root = str(tmp_path / "dev")
    args = (spec(server), "--remote-root", root)
    assert run_deploy(server, known_hosts, *args)[0].returncode == 0
    calls = len(server.shim_calls())
    done, report = run_deploy(server, known_hosts, *args, report=str(tmp_path / "r.json"))
    assert done.returncode == 0 and report["hosts"][0]["result"] == "unchanged"
    assert report["hosts"][0]["uploaded"] == []
    assert "service active, healthy" in report["hosts"][0]["message"]
    assert not [c for c in server.shim_calls()[calls:] if c.startswith("restart")]


def test_unknown_host_key_aborts_that_host_and_the_other_goes_on(server, known_hosts, tmp_path):
    # given known_hosts knows port 0 but not port 1
    roots = [str(tmp_path / "known"), str(tmp_path / "unknown")]
    inventory = write(tmp_path / "inv.yaml", json.dumps({"hosts": {
        "known": {"address": "127.0.0.1", "port": server.ports[0], "user": "root",
                  "remote_root": roots[0]},
        "unknown": {"address": "127.0.0.1", "port": server.ports[1], "user": "root",
                    "remote_root": roots[1]}}}))
    # when deploying both
    done, report = run_deploy(server, known_hosts, "--inventory", inventory,
                              report=str(tmp_path / "r.json"))
    # then the unknown one is aborted with a clear message, untouched, and the known one is ok
    results = {h["host"]: h for h in report["hosts"]}
    assert done.returncode == 7
    assert results["known"]["result"] == "ok"
    assert results["unknown"]["result"] == "aborted"
    assert "host key unknown" in results["unknown"]["message"]
    assert "--accept-new-host-keys" in results["unknown"]["message"]
    assert not os.path.exists(roots[1])


def test_accept_new_host_keys_adds_an_unknown_key(server, known_hosts, tmp_path):
    done, report = run_deploy(server, known_hosts, spec(server, 1), "--accept-new-host-keys",
                              "--remote-root", str(tmp_path / "dev"),
                              report=str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    found = subprocess.run(["ssh-keygen", "-F", "[127.0.0.1]:%d" % server.ports[1],
                            "-f", known_hosts], stdout=subprocess.PIPE)
    assert found.returncode == 0   # the key is now known (ssh may hash the name)


def test_changed_host_key_is_refused_even_with_accept_new_host_keys(server, tmp_path):
    # given known_hosts holds another key for the host (as after a man-in-the-middle)
    from sshd import keygen
    other = keygen(str(tmp_path / "other"))
    known_hosts = str(tmp_path / "known_hosts")
    with open(known_hosts, "w") as f:
        f.write(server.known_hosts_line(server.ports[0], other))
    root = str(tmp_path / "dev")
    # when deploying with --accept-new-host-keys
    done, report = run_deploy(server, known_hosts, spec(server), "--accept-new-host-keys",
                              "--remote-root", root, report=str(tmp_path / "r.json"))
    # then the host is aborted, nothing was written there, and known_hosts still has the old key
    host = report["hosts"][0]
    assert done.returncode == 7 and host["result"] == "aborted"
    assert "host key CHANGED" in host["message"] and "ssh-keygen -R" in host["message"]
    assert not os.path.exists(root)
    with open(known_hosts) as f:
        assert f.read() == server.known_hosts_line(server.ports[0], other)


@pytest.mark.parametrize("how", ["dies_before_ready", "health_cmd_fails"])
def test_failed_health_rolls_back_with_recording_systemctl_shim(server, known_hosts, tmp_path,
                                                                how):
    # given a device running a first release
    root = str(tmp_path / "dev")
    model = write(tmp_path / "m.onnx", "good")
    args = [spec(server), "--remote-root", root, "--model", model]
    first, r1 = run_deploy(server, known_hosts, *args, report=str(tmp_path / "r1.json"))
    assert first.returncode == 0, first.stderr
    good = r1["hosts"][0]["new"]
    # when the next release is unhealthy
    write(tmp_path / "m.onnx", "bad")
    extra = []
    if how == "dies_before_ready":   # Type=notify: systemctl restart itself fails
        write(tmp_path / "m.onnx", "crash-before-ready:0.5")
    else:
        extra += ["--health-timeout", "1.5"]
        extra += ["--health-cmd", sys.executable + " -c 'import sys; sys.exit(\"{release}\" != \"x\")'"]
    calls = len(server.shim_calls())
    done, r2 = run_deploy(server, known_hosts, *(args + extra), report=str(tmp_path / "r2.json"))
    # then it was switched back to the good release and restarted, and the table says so
    host = r2["hosts"][0]
    assert done.returncode == 7
    assert host["result"] == "rolled back" and host["old"] == good and host["new"] != good
    assert current_release(root) == "releases/" + good
    assert "rolled back" in done.stdout and "%s -> %s" % (good, host["new"]) in done.stdout
    restarts = [c for c in server.shim_calls()[calls:] if c.startswith("restart")]
    assert restarts == ["restart edgeagent", "restart edgeagent"]


def test_rollback_by_hand_goes_to_the_previous_release(server, known_hosts, tmp_path):
    root = str(tmp_path / "dev")
    model = write(tmp_path / "m.onnx", "1")
    args = [spec(server), "--remote-root", root, "--model", model]
    _, r1 = run_deploy(server, known_hosts, *args, report=str(tmp_path / "r1.json"))
    write(tmp_path / "m.onnx", "2")
    _, r2 = run_deploy(server, known_hosts, *args, report=str(tmp_path / "r2.json"))
    assert current_release(root) == "releases/" + r2["hosts"][0]["new"]
    done, r3 = run_deploy(server, known_hosts, spec(server), "--remote-root", root, "--rollback",
                          report=str(tmp_path / "r3.json"))
    assert done.returncode == 0, done.stderr
    assert r3["hosts"][0]["result"] == "rolled back"
    assert current_release(root) == "releases/" + r1["hosts"][0]["new"]


def test_dry_run_changes_nothing_on_the_host(server, known_hosts, tmp_path):
    # given a deployed device
    root = str(tmp_path / "dev")
    model = write(tmp_path / "m.onnx", "1")
    assert run_deploy(server, known_hosts, spec(server), "--remote-root", root,
                      "--model", model)[0].returncode == 0
    before = tree(root)
    calls = len(server.shim_calls())
    # when a changed model is deployed with --dry-run
    write(tmp_path / "m.onnx", "2")
    done, report = run_deploy(server, known_hosts, spec(server), "--remote-root", root, "--model",
                              model, "--dry-run", report=str(tmp_path / "r.json"))
    # then the plan is printed and nothing on the host changed
    host = report["hosts"][0]
    assert done.returncode == 0 and host["result"] == "planned"
    assert host["uploaded"] == ["models/m.onnx"] and "would install" in host["message"]
    assert tree(root) == before
    assert len(server.shim_calls()) == calls


def test_credentials_are_installed_mode_600(server, known_hosts, tmp_path):
    root = tmp_path / "dev"
    secret = write(tmp_path / "mqtt.pass", "s3cret")
    done, _ = run_deploy(server, known_hosts, spec(server), "--remote-root", str(root),
                         "--credential", "mqtt-password=" + secret)
    assert done.returncode == 0, done.stderr
    folder = root / "etc" / "edgeagent" / "credentials"
    assert (folder / "mqtt-password").read_text() == "s3cret"
    assert stat.S_IMODE(os.stat(str(folder / "mqtt-password")).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(str(folder)).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(str(root / "opt" / "edgeagent" / "cache")).st_mode) == 0o700


def test_deploy_with_wheelhouse_into_an_isolated_venv(server, known_hosts, tmp_path):
    # given the agent's dependency wheels and a venv without system site-packages
    root = tmp_path / "dev"
    done, report = run_deploy(server, known_hosts, spec(server), "--remote-root", str(root),
                              "--wheelhouse", session_wheelhouse(), "--site-packages", "no",
                              "--extras", "opencv",
                              report=str(tmp_path / "r.json"))
    assert done.returncode == 0, done.stderr
    # then numpy came from the uploaded wheelhouse into the release's own venv
    venv_python = root / "opt" / "edgeagent" / "current" / "venv" / "bin" / "python"
    where = subprocess.run([str(venv_python), "-c", "import numpy; print(numpy.__file__)"],
                           stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    # (the release's venv is shared by releases with the same dependencies: opt/edgeagent/venvs)
    venvs = os.path.realpath(str(root / "opt" / "edgeagent" / "venvs"))
    assert os.path.realpath(where.strip()).startswith(venvs)
    assert any(u.startswith("wheels/numpy-") for u in report["hosts"][0]["uploaded"])


@pytest.mark.parametrize("python", ["/root/.pyenv/versions/3.6.15/bin/python3.6", DEVICE_PYTHON])
def test_remote_helper_probe_runs_on_device_pythons(python, tmp_path):
    # the helper goes to devices as `python3 - OP JSON`: it must run on JetPack 4.6's 3.6
    with open(HELPER, "rb") as f:
        done = subprocess.run([python, "-", "probe", json.dumps({"root": str(tmp_path)})],
                              input=f.read(), stdout=subprocess.PIPE, check=True)
    result = json.loads(done.stdout.decode().splitlines()[-1].split(" ", 1)[1])
    assert result["current"] is None and result["cache"] == [] and result["python"][0] == 3
