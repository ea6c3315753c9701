"""An unusable outbox file (random bytes, truncated, a future schema version): the real agent
starts anyway, keeps the old file aside with a timestamp, starts a fresh outbox whose seq goes
on above every seq handed out before, and says so in its log and in health."""

import os
import sqlite3

import pytest

from agent.mqtt.outbox import Outbox
from agent_proc import AgentProcess, mqtt_section, write_config
from broker import Subscriber

DEVICE = "corrupt-cam"
TOPIC = "edgeagent/%s/results" % DEVICE


def spoil(path, how):
    size = os.path.getsize(path)
    if how == "random bytes":
        with open(path, "wb") as handle:
            handle.write(os.urandom(size))
    elif how == "truncated":
        with open(path, "r+b") as handle:
            handle.truncate(size // 3)
    elif how == "future schema":
        db = sqlite3.connect(path)
        db.execute("PRAGMA user_version=99")
        db.commit()
        db.close()


def filled_outbox(path, count=80):
    outbox = Outbox(path, commit_interval_ms=20)
    seqs = [outbox.put(TOPIC, b"x" * 700) for _ in range(count)]
    assert outbox.flush(10)
    outbox.close()
    return seqs


HOW = ["random bytes", "truncated", "future schema"]


@pytest.mark.parametrize("how", HOW)
def test_unusable_outbox_is_moved_aside_and_a_fresh_one_continues_seq(tmp_path, how):
    # given an outbox with 80 results, spoiled
    path = str(tmp_path / "outbox.sqlite")
    before = filled_outbox(path)
    spoil(path, how)
    # when it is opened again
    outbox = Outbox(path, commit_interval_ms=20)
    try:
        # then the old file is kept aside, a fresh outbox works, and seq goes on
        moved = outbox.recovered["moved_to"]
        assert os.path.isfile(moved) and moved.startswith(path + ".corrupt-")
        assert outbox.recovered["reason"]
        assert outbox.pending_count == 0
        assert outbox.put(TOPIC, b"y") > max(before)
        assert outbox.flush(5) and [m.payload for m in outbox.pending(10)] == [b"y"]
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    finally:
        outbox.close()


@pytest.mark.parametrize("how", HOW)
def test_agent_starts_with_an_unusable_outbox_and_health_says_so(tmp_path, broker, how,
                                                                 sample_video, schema_validator):
    # given a state_dir whose outbox is spoiled
    state = tmp_path / "state"
    state.mkdir()
    before = filled_outbox(str(state / "outbox.sqlite"))
    spoil(str(state / "outbox.sqlite"), how)
    config = write_config(str(tmp_path / "config.yaml"), device={"id": DEVICE},
                          pipeline="face-detect", backend="onnxruntime", state_dir=str(state),
                          mqtt=mqtt_section(broker.port), health={"interval_s": 0.5},
                          camera={"loop": True}, log={"level": "info"})
    sub = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE)
    try:
        with AgentProcess(config, ("--source", "file://" + sample_video)) as agent:
            # when the agent starts: it runs and publishes, and health names the file kept aside
            assert sub.wait_for(lambda msgs: any(
                m.json().get("outbox", {}).get("recovered") for m in sub.received("/health")),
                timeout_s=60), agent.log_text()[-3000:]
            health = [m.json() for m in sub.received("/health")][-1]
            schema_validator.validate("health", health)
            recovered = health["outbox"]["recovered"]
            assert os.path.isfile(recovered["moved_to"]) and recovered["reason"]
            assert health["state"] == "running"
            assert sub.wait_for(lambda msgs: sub.seqs(), timeout_s=60)
            assert min(sub.seqs()) > max(before)
            assert agent.log_times(r"moved aside to .*\.corrupt-")
            code, _ = agent.stop()
        assert code == 0
    finally:
        sub.close()
