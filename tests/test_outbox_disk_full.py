"""A full disk: the agent's state_dir on a small tmpfs (mounted by the test, as root), the broker
down, then up. The agent keeps running in state `degraded`, logs "disk full" once per interval,
counts exactly what it could not store, stores again by itself once space returns, delivers
everything it stored, and does not exit 0 having lost results."""

import os
import subprocess

import pytest

from agent_proc import AgentProcess, mqtt_section, wait_until, write_config
from broker import Broker, Subscriber

DEVICE = "full-cam"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root "
                                "(CI runs as root)")


@pytest.fixture
def small_state_dir(tmp_path):
    """A 1 MiB tmpfs, unmounted at teardown."""
    path = tmp_path / "state"
    path.mkdir()
    subprocess.check_call(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(path)])
    try:
        yield path
    finally:
        subprocess.call(["umount", "-l", str(path)])


def fill(path, leave_bytes):
    """A ballast file that leaves about `leave_bytes` free."""
    stat = os.statvfs(str(path))
    size = max(0, stat.f_bavail * stat.f_frsize - leave_bytes)
    with open(str(path / "ballast"), "wb") as handle:
        handle.write(b"\0" * size)
    return path / "ballast"


def health(sub):
    return [m.json() for m in sub.received("/health")]


def test_full_disk_degrades_counts_exactly_recovers_and_never_exits_0(
        tmp_path, small_state_dir, sample_video):
    # given a state_dir with little room left and a broker that is down
    ballast = fill(small_state_dir, 256 * 1024)
    broker = Broker(tmp_path / "broker")
    # a subscriber whose persistent session the broker keeps across its restart, so it misses
    # nothing the agent publishes the moment the broker is back
    broker.start()
    sub = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE)
    broker.stop()
    config = write_config(str(tmp_path / "config.yaml"), device={"id": DEVICE},
                          pipeline="face-detect", backend="onnxruntime",
                          state_dir=str(small_state_dir), mqtt=mqtt_section(broker.port),
                          health={"interval_s": 0.5}, camera={"loop": True},
                          log={"level": "info"})
    with AgentProcess(config, ("--source", "file://" + sample_video)) as agent:
        # when results fill the disk: one clear "disk full" line, and the agent goes on
        assert wait_until(lambda: agent.log_times(r"disk full") or not agent.running,
                          timeout_s=120) and agent.running, agent.log_text()[-3000:]
        assert agent.running
        # and the broker comes up: health counts what was not stored, and says degraded while
        # storage is full. (Once the broker acknowledges the backlog the journal shrinks and the
        # agent may store again before a health message catches it full: then the log says so.)
        broker.start()
        try:
            assert sub.wait_for(lambda m: any(h["outbox"]["unstored"] > 0 for h in health(sub)),
                                timeout_s=60), health(sub)[-1:]
            assert all(h["state"] == "degraded" for h in health(sub)
                       if h["outbox"]["storage"] == "full"), health(sub)
            assert any(h["state"] == "degraded" for h in health(sub)) or \
                agent.log_times(r"storing again"), agent.log_text()[-3000:]
            # when space returns
            ballast.unlink()
            back = agent.wait_log(r"storing again", timeout_s=60)
            assert back, agent.log_text()[-3000:]
            # then it stores (and prints) results again and health says running
            assert agent.wait_result(timeout_s=60, after=back)
            assert sub.wait_for(lambda m: any(h["state"] == "running" for h in health(sub)[-3:]),
                                timeout_s=60)
            code, _ = agent.stop()
            printed = agent.results_after(0.0)
            final = health(sub)[-1]["outbox"]
            # then every printed (stored) result reaches the broker: during the stop's drain, or
            # (a loaded machine can outlast the bounded drain) from the outbox at the next start
            keys = {(p["boot_id"], p["seq"]) for p in printed}

            def delivered(_=None):
                return keys <= {(x.json()["boot_id"], x.json()["seq"])
                                for x in sub.received("/results")}
            if not sub.wait_for(delivered, timeout_s=20):
                with AgentProcess(config, ("--source", "file://" + sample_video)):
                    assert sub.wait_for(delivered, timeout_s=120), len(keys)
        finally:
            sub.close()
            broker.stop()
    # and the count is exact: the seqs missing from what was printed are the unstored ones
    seqs = [p["seq"] for p in printed]
    assert len({p["boot_id"] for p in printed}) == 1 and seqs == sorted(seqs)
    assert final["unstored"] > 0 and final["dropped"] == 0
    missing = set(range(1, seqs[-1] + 1)) - set(seqs)
    assert len(missing) == _unstored_at_exit(agent) >= final["unstored"]
    # and "disk full" was said once (one line per interval, the interval is a minute)
    assert len([t for t in agent.log_times(r"disk full") if t < back]) == 1
    # and the agent did not claim a clean exit
    assert code == 6, agent.log_text()[-2000:]
    assert "could not be stored" in agent.log_text()


def _unstored_at_exit(agent):
    import re
    found = re.findall(r"(\d+) results could not be stored", agent.log_text())
    return int(found[-1]) if found else -1
