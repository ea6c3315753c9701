"""The Ansible collection edgeagent.fleet (ansible/ansible_collections/) with ansible-core 2.16
from PyPI (the newest that manages Python 3.6 targets, JetPack 4.6), against the same real sshd
devices as the other deploy tests (tests/sshd.py): the inventory plugin's output against a golden
file, and playbook runs that deploy, roll back on a failed health gate and roll back by hand.

ansible-core comes from `make ansible` (.venv-ansible) or $EDGEAGENT_ANSIBLE_BIN."""

import json
import os
import subprocess

import pytest

from sshd import DEVICE_PYTHON, REPO, current_release, session_sshd, session_wheel
from sshd import stop_session_services


@pytest.fixture(autouse=True)
def _stop_fake_agents():
    """Nothing a test starts outlives it: the fake agents the systemctl stand-in started."""
    yield
    stop_session_services()


GOLDEN = os.path.join(os.path.dirname(__file__), "data", "ansible_inventory_golden.json")


def python36():
    """JetPack 4.6's Python (pyenv 3.6.x): Ansible's modules run on it as on a Nano."""
    import glob
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6*/bin/python3.6")))
    if not found:
        pytest.fail("Python 3.6 not found (pyenv install 3.6.15): the target a JetPack 4.6 "
                    "fleet has")
    return found[-1]


def ansible_bin():
    folder = os.environ.get("EDGEAGENT_ANSIBLE_BIN") or os.path.join(REPO, ".venv-ansible", "bin")
    if not os.path.exists(os.path.join(folder, "ansible-playbook")):
        pytest.fail("ansible-core not found in %s: run `make ansible` (or set "
                    "EDGEAGENT_ANSIBLE_BIN)" % folder)
    return folder


def ansible_env(tmp_path):
    import sys
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "ansible"),
               ANSIBLE_HOST_KEY_CHECKING="True", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-local"),
               ANSIBLE_REMOTE_TEMP=str(tmp_path / "ansible-remote"),
               ANSIBLE_RETRY_FILES_ENABLED="False", ANSIBLE_PYTHON_INTERPRETER=python36(),
               PYTHONPATH=REPO)
    env["EA_CONTROLLER_PYTHON"] = sys.executable
    return env


def write_fleet(tmp_path, server, names, profile_of, site_of):
    hosts = {}
    for name in names:
        hosts[name] = {"address": "127.0.0.1", "device_id": name, "profile": profile_of(name),
                       "site": site_of(name), "groups": ["cameras"]}
    fleet = tmp_path / "fleet.yaml"
    model = tmp_path / "m.onnx"
    if not model.exists():
        model.write_text("ok")
    fleet.write_text(json.dumps({
        "defaults": {"port": server.ports[0], "user": "root", "key": server.client_key,
                     "python": DEVICE_PYTHON, "models": ["m.onnx"],
                     "remote_root": str(tmp_path / "roots" / "{name}")},
        "groups": {"cameras": {"pipeline": "face-detect"}},
        "hosts": hosts}, indent=1))
    source = tmp_path / "fleet.edgeagent.yml"
    source.write_text("plugin: edgeagent.fleet.fleet\nfleet: fleet.yaml\n")
    return str(source), model


def test_inventory_plugin_groups_the_fleet_by_profile_and_site(tmp_path):
    server = session_sshd()
    source, _ = write_fleet(tmp_path, server, ["nano-01", "nano-02", "pi-01"],
                            lambda n: "jetson-nano" if n.startswith("nano") else "raspberrypi-4",
                            lambda n: "lab" if n != "nano-02" else "depot")
    done = subprocess.run([os.path.join(ansible_bin(), "ansible-inventory"), "-i", source,
                           "--list"], env=ansible_env(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True)
    assert done.returncode == 0, done.stderr
    text = done.stdout.replace(str(tmp_path), "{dir}").replace(server.client_key, "{key}")
    text = text.replace(": %d" % server.ports[0], ': "{port}"')
    found = json.loads(text)
    if os.environ.get("EDGEAGENT_WRITE_GOLDEN"):
        with open(GOLDEN, "w") as f:
            json.dump(found, f, indent=1, sort_keys=True)
            f.write("\n")
    with open(GOLDEN) as f:
        assert found == json.load(f)


def playbook(tmp_path, source, *extra):
    known_hosts = tmp_path / "known_hosts"
    server = session_sshd()
    server.write_known_hosts(str(known_hosts), server.ports[:1])
    env = ansible_env(tmp_path)
    argv = [os.path.join(ansible_bin(), "ansible-playbook"), "-i", source,
            "edgeagent.fleet.deploy", "-e", "edgeagent_wheel=" + session_wheel(),
            "-e", "edgeagent_controller_python=" + env["EA_CONTROLLER_PYTHON"],
            "-e", "edgeagent_staging=" + str(tmp_path / "staging"),
            "-e", "edgeagent_health_timeout=20",
            # placeholder models on a device without an inference runtime (tests/sshd.py)
            "-e", "edgeagent_validate=false",
            "-e", "ansible_ssh_common_args='-o UserKnownHostsFile=%s'" % known_hosts] + list(extra)
    return subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=600)


def test_playbook_deploys_rolls_back_a_bad_release_and_rolls_back_by_hand(tmp_path):
    server = session_sshd()
    names = ["cam-1", "cam-2"]
    source, model = write_fleet(tmp_path, server, names, lambda n: "generic-x86_64",
                                lambda n: "lab")
    roots = {n: str(tmp_path / "roots" / n) for n in names}
    # given the fleet deployed with release A (modules of ansible-core 2.16 on Python 3.6)
    model.write_text("ok-A")
    done = playbook(tmp_path, source)
    assert done.returncode == 0, done.stdout[-3000:]
    a = {n: current_release(roots[n]) for n in names}
    assert len(set(a.values())) == 2       # device ids differ, so do the releases
    # when release B dies before READY on every device
    model.write_text("crash-before-ready:0.2")
    done = playbook(tmp_path, source)
    # then the canary (serial 1) failed and rolled itself back; max_fail_percentage 0 stopped
    # the play before anyone else was touched
    assert done.returncode != 0
    assert "did not come up" in done.stdout and "back on" in done.stdout
    assert {n: current_release(roots[n]) for n in names} == a
    assert len(os.listdir(os.path.join(roots["cam-2"], "opt", "edgeagent", "releases"))) == 1
    # when release C is good, and then the operator rolls back by hand
    model.write_text("ok-C")
    done = playbook(tmp_path, source)
    assert done.returncode == 0, done.stdout[-3000:]
    assert all(current_release(roots[n]) != a[n] for n in names)
    done = playbook(tmp_path, source, "-e", "edgeagent_action=rollback")
    # then every device is back on A (the newest healthy release, not the failed B)
    assert done.returncode == 0, done.stdout[-3000:]
    assert {n: current_release(roots[n]) for n in names} == a
    # and the same release again is verified, not redeployed
    model.write_text("ok-A")
    done = playbook(tmp_path, source)
    assert done.returncode == 0 and "changed=0" in done.stdout.replace(" ", ""), done.stdout[-3000:]
