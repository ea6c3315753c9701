"""Fleet rollouts against one real sshd serving many device roots: parallel forks, canary
batches and the failure budget."""

import json
import os

import pytest

from sshd import current_release, run_deploy, session_sshd
from sshd import stop_session_services


@pytest.fixture(autouse=True)
def _stop_fake_agents():
    """Nothing a test starts outlives it: the fake agents the systemctl stand-in started."""
    yield
    stop_session_services()


@pytest.fixture()
def server():
    return session_sshd()


def inventory(tmp_path, server, count, bad=()):
    hosts = {}
    for i in range(1, count + 1):
        name = "dev%02d" % i
        hosts[name] = {"device_id": name, "python": "/nonexistent/python3" if name in bad else
                       "/usr/bin/python3"}
    path = tmp_path / "inventory.yaml"
    path.write_text(json.dumps({
        "defaults": {"port": server.ports[0], "user": "root",
                     "remote_root": str(tmp_path / "roots" / "{name}")},
        "hosts": {n: dict(h, address="127.0.0.1") for n, h in hosts.items()}}))
    return str(path)


def test_ten_hosts_with_five_forks_take_well_under_serial_time(server, tmp_path):
    # given 10 fresh devices, deployed once one at a time and once 5 at a time
    known_hosts = server.write_known_hosts(str(tmp_path / "kh"), server.ports[:1])
    timings = {}
    for forks in (1, 5):
        run_dir = tmp_path / ("forks%d" % forks)
        run_dir.mkdir()
        inv = inventory(run_dir, server, 10)
        done, report = run_deploy(server, known_hosts, "--inventory", inv, "--forks", str(forks),
                                  "--health-settle", "1", report=str(run_dir / "r.json"))
        # then every host is done, each on its own root
        assert done.returncode == 0, done.stderr
        assert [h["result"] for h in report["hosts"]] == ["ok"] * 10
        for h in report["hosts"]:
            assert current_release(str(run_dir / "roots" / h["host"])) == "releases/" + h["new"]
        timings[forks] = report["seconds"]
    print("10 hosts: forks=1 %.1f s, forks=5 %.1f s, ratio %.2f"
          % (timings[1], timings[5], timings[5] / timings[1]))
    # and 5 forks take well under the serial time
    assert timings[5] < 0.6 * timings[1]


def test_canary_failure_with_max_fail_0_stops_the_rollout(server, tmp_path):
    # given 4 hosts whose first (the canary) cannot work
    known_hosts = server.write_known_hosts(str(tmp_path / "kh"), server.ports[:1])
    inv = inventory(tmp_path, server, 4, bad=("dev01",))
    # when rolling out one, then the rest, with no failure allowed
    done, report = run_deploy(server, known_hosts, "--inventory", inv, "--serial", "1,100%",
                              "--max-fail", "0", report=str(tmp_path / "r.json"))
    # then the canary failed and nobody else was touched
    results = [h["result"] for h in report["hosts"]]
    assert done.returncode == 7
    assert results == ["failed", "skipped", "skipped", "skipped"]
    assert not os.path.exists(str(tmp_path / "roots" / "dev02"))
    assert "failure budget" in done.stdout


def test_without_failure_budget_the_others_go_on(server, tmp_path):
    known_hosts = server.write_known_hosts(str(tmp_path / "kh"), server.ports[:1])
    inv = inventory(tmp_path, server, 3, bad=("dev02",))
    done, report = run_deploy(server, known_hosts, "--inventory", inv, "--limit", "dev01,dev02",
                              report=str(tmp_path / "r.json"))
    assert [h["result"] for h in report["hosts"]] == ["ok", "failed"]
    assert "/nonexistent/python3" in report["hosts"][1]["message"]
