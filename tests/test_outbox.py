"""The durable outbox on its own: seq, order, acks, caps, restarts, memory, never blocking."""

import json
import os
import sqlite3
import time

import pytest

from agent.errors import OutputError
from agent.mqtt.outbox import Outbox

TOPIC = "edgeagent/dev1/results"


def payload_of(seq: int) -> bytes:
    return json.dumps({"seq": seq, "pad": "x" * 40}).encode()


def open_outbox(tmp_path, **kwargs) -> Outbox:
    kwargs.setdefault("commit_interval_ms", 20)
    return Outbox(str(tmp_path / "state" / "outbox.sqlite"), **kwargs)


def vm_rss_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def test_put_assigns_increasing_seq_that_the_payload_contains(tmp_path):
    # given an empty outbox
    outbox = open_outbox(tmp_path)
    # when three results are put with a payload maker
    seqs = [outbox.put(TOPIC, payload_of, 1) for _ in range(3)]
    assert outbox.flush(5)
    # then seq starts at 1, increases by one and each payload carries its own seq
    assert seqs == [1, 2, 3]
    stored = outbox.pending(10)
    assert [m.seq for m in stored] == seqs
    assert [json.loads(m.payload)["seq"] for m in stored] == seqs
    assert {(m.topic, m.qos) for m in stored} == {(TOPIC, 1)}
    outbox.close()


def test_pending_after_seq_pages_in_order_and_acked_messages_go_away(tmp_path):
    # given ten stored messages
    outbox = open_outbox(tmp_path)
    for _ in range(10):
        outbox.put(TOPIC, payload_of)
    outbox.flush(5)
    # when the first four are acked
    for seq in (1, 2, 3, 4):
        outbox.ack(seq)
    # then they are gone at once from pending() and from the count, and after the commit on disk
    assert [m.seq for m in outbox.pending(3)] == [5, 6, 7]
    assert [m.seq for m in outbox.pending(100, after_seq=8)] == [9, 10]
    assert outbox.pending_count == 6
    outbox.flush(5)
    assert outbox.pending_count == 6
    assert outbox.pending_bytes == sum(len(payload_of(s)) for s in range(5, 11))
    outbox.close()


def test_seq_survives_restart_even_when_the_outbox_is_empty(tmp_path):
    # given an outbox whose messages were all acknowledged
    outbox = open_outbox(tmp_path)
    for _ in range(5):
        outbox.put(TOPIC, payload_of)
    outbox.flush(5)
    for message in outbox.pending(10):
        outbox.ack(message.seq)
    outbox.close()
    # when it is opened again
    reopened = open_outbox(tmp_path)
    # then it is empty and seq continues after the last one handed out
    assert reopened.pending_count == 0
    assert reopened.put(TOPIC, payload_of) == 6
    reopened.close()


def test_unacked_messages_survive_restart_in_order(tmp_path):
    # given three stored messages, one of them acked
    outbox = open_outbox(tmp_path)
    for _ in range(3):
        outbox.put(TOPIC, payload_of)
    outbox.flush(5)
    outbox.ack(2)
    outbox.close()
    # when reopened
    reopened = open_outbox(tmp_path)
    # then the other two are still pending, oldest first
    assert [m.seq for m in reopened.pending(10)] == [1, 3]
    assert reopened.pending_count == 2
    reopened.close()


@pytest.mark.parametrize("max_messages, puts", [(1, 5), (10, 10), (10, 11), (1000, 50000)])
def test_message_cap_drops_oldest_and_counts_exactly(tmp_path, max_messages, puts):
    # given an outbox capped at max_messages
    outbox = open_outbox(tmp_path, max_messages=max_messages)
    # when more are put than fit
    for _ in range(puts):
        outbox.put(TOPIC, payload_of)
    assert outbox.flush(10)
    # then exactly the newest max_messages remain and the rest are counted as dropped
    kept = list(range(max(1, puts - max_messages + 1), puts + 1))
    assert [m.seq for m in outbox.pending(puts)] == kept
    assert outbox.pending_count == len(kept)
    assert outbox.dropped == puts - len(kept)
    outbox.close()
    # and the dropped count survives a restart
    assert open_outbox(tmp_path, max_messages=max_messages).dropped == puts - len(kept)


def test_byte_cap_drops_oldest_until_the_payload_bytes_fit(tmp_path):
    # given a 4 KiB cap and 1 KiB payloads
    outbox = open_outbox(tmp_path, max_bytes=4096)
    # when ten are put
    for _ in range(10):
        outbox.put(TOPIC, b"x" * 1024)
    outbox.flush(5)
    # then the newest four remain
    assert [m.seq for m in outbox.pending(20)] == [7, 8, 9, 10]
    assert outbox.dropped == 6
    assert outbox.pending_bytes == 4096
    outbox.close()


def test_cap_reached_while_messages_are_in_flight_keeps_counts_exact(tmp_path):
    # given a full outbox whose oldest messages are in flight (read, not yet acked)
    outbox = open_outbox(tmp_path, max_messages=5)
    for _ in range(5):
        outbox.put(TOPIC, payload_of)
    outbox.flush(5)
    in_flight = [m.seq for m in outbox.pending(5)]
    # when five more push the in-flight ones out and their PUBACKs arrive late
    for _ in range(5):
        outbox.put(TOPIC, payload_of)
    outbox.flush(5)
    for seq in in_flight:
        outbox.ack(seq)
    outbox.flush(5)
    # then the count reflects only the five newest, and each drop is counted once
    assert outbox.pending_count == 5
    assert outbox.dropped == 5
    assert [m.seq for m in outbox.pending(10)] == [6, 7, 8, 9, 10]
    outbox.close()


def test_memory_stays_flat_when_the_cap_is_reached_during_a_long_outage(tmp_path):
    # given a 1000-message outbox warmed up past its cap
    outbox = open_outbox(tmp_path, max_messages=1000, commit_interval_ms=50)
    big = b"r" * 1024
    for _ in range(5000):
        outbox.put(TOPIC, big)
    outbox.flush(10)
    before_kb = vm_rss_kb()
    # when 50 000 more 1 KiB results arrive and nobody acks (broker unreachable)
    for _ in range(50000):
        outbox.put(TOPIC, big)
    outbox.flush(10)
    after_kb = vm_rss_kb()
    # then RSS grew far less than the 50 MB those results would take in RAM
    assert after_kb - before_kb < 8 * 1024, (before_kb, after_kb)
    assert outbox.pending_count == 1000
    assert outbox.dropped == 54000
    outbox.close()


def test_put_does_not_wait_for_disk_commits(tmp_path):
    # given an outbox that commits only every 2 s
    outbox = open_outbox(tmp_path, commit_interval_ms=2000, batch=10 ** 9)
    # when 2000 results are put
    started = time.monotonic()
    for _ in range(2000):
        outbox.put(TOPIC, payload_of)
    took = time.monotonic() - started
    # then putting took far less than one commit interval, and nothing is on disk yet
    assert took < 1.5
    probe = sqlite3.connect(outbox.path)
    assert probe.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    assert outbox.flush(5)
    assert probe.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 2000
    probe.close()
    outbox.close()


def test_database_is_in_wal_mode_with_full_sync(tmp_path):
    # given an outbox
    outbox = open_outbox(tmp_path)
    outbox.close()
    # then the file is WAL (survives a crash while readers and the writer work)
    probe = sqlite3.connect(outbox.path)
    assert probe.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    probe.close()


def test_put_after_close_is_an_output_error(tmp_path):
    outbox = open_outbox(tmp_path)
    outbox.close()
    with pytest.raises(OutputError, match="closed"):
        outbox.put(TOPIC, b"{}")


def test_unwritable_path_is_an_output_error_naming_the_path(tmp_path):
    # given a path below a regular file, which cannot be a folder
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = os.path.join(str(blocker), "outbox.sqlite")
    with pytest.raises(OutputError, match="outbox.path"):
        Outbox(path)


def _journal_files(tmp_path):
    return sorted(p.name for p in (tmp_path / "state").iterdir() if ".journal-" in p.name)


def _sqlite_rows(tmp_path):
    with sqlite3.connect(str(tmp_path / "state" / "outbox.sqlite")) as db:
        count = db.execute("SELECT COUNT(*) FROM messages").fetchone()[0]
        written = db.execute("SELECT value FROM meta WHERE key = 'committed_seq'").fetchone()
    return count, written


def wait_for(probe, timeout_s=30.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.02)
    return probe()


def test_results_the_broker_acknowledges_in_time_never_cost_a_sqlite_write(tmp_path):
    # given an outbox and 50 results that are acknowledged soon after they were put
    outbox = open_outbox(tmp_path)
    seqs = [outbox.put(TOPIC, payload_of) for _ in range(50)]
    outbox.ack_many(seqs)
    # when the writer has resolved them (their journal files are gone)
    assert wait_for(lambda: outbox.pending_count == 0 and not _journal_files(tmp_path)[:-1])
    # then SQLite was never written: no row, and no commit ever recorded
    assert _sqlite_rows(tmp_path) == (0, None)
    outbox.close()


def test_results_left_unacknowledged_move_into_sqlite_and_their_journal_goes(tmp_path):
    # given 20 results nobody acknowledges (the broker is down)
    outbox = open_outbox(tmp_path)
    seqs = [outbox.put(TOPIC, payload_of) for _ in range(20)]
    # when they have waited longer than MIGRATE_AFTER_S
    assert wait_for(lambda: _sqlite_rows(tmp_path)[0] == 20)
    # then they are in SQLite, still pending, and the journal that held them is deleted
    assert [m.seq for m in outbox.pending(100)] == seqs
    assert wait_for(lambda: len(_journal_files(tmp_path)) <= 1)
    outbox.close()
    assert _journal_files(tmp_path) == []


def test_a_torn_journal_tail_is_ignored_and_the_records_before_it_are_recovered(tmp_path, caplog):
    # given a journal file as a power cut leaves it: whole records, then a torn one
    from agent.mqtt import journal
    state = tmp_path / "state"
    state.mkdir()
    rows = [(seq, TOPIC, payload_of(seq), 1, time.time()) for seq in (1, 2, 3)]
    torn = journal.encode((4, TOPIC, payload_of(4), 1, time.time()))[:-7]
    (state / "outbox.sqlite.journal-1").write_bytes(b"".join(map(journal.encode, rows)) + torn)
    (state / "outbox.sqlite.seq").write_text("reserved 10000\n")    # as that run reserved
    # when the outbox opens
    outbox = open_outbox(tmp_path)
    try:
        # then the whole records are pending, the torn one is not, and seq goes on above the
        # reserved block (seq 4 may have been printed before the power cut: never reused)
        assert [m.seq for m in outbox.pending(10)] == [1, 2, 3]
        assert outbox.put(TOPIC, payload_of) == 10001
        assert any("trailing bytes ignored" in r.getMessage() for r in caplog.records)
    finally:
        outbox.close()
    # and after a clean close they are in SQLite and no journal is left
    assert _sqlite_rows(tmp_path)[0] == 4 and _journal_files(tmp_path) == []
