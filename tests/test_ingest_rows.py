"""The ingest's pure parts, no services: topic + payload -> a row or a reason to reject it,
and the DSN as messages show it (without its password)."""

import json

import pytest

from agent.fleet.ingest.rows import HealthRow, Rejected, ResultRow, to_row
from agent.fleet.ingest.store import safe_dsn
from ingest_helpers import health


@pytest.mark.parametrize("payload, boot, seq", [
    ({"seq": 7, "boot_id": "ab" * 16}, "ab" * 16, 7),
    ({"seq": 7}, "", 7),                               # agents before boot_id: ""
    ({"seq": 7, "boot_id": None}, "", 7),
])
def test_result_rows_are_keyed_on_device_boot_and_seq(payload, boot, seq):
    row = to_row("edgeagent", "edgeagent/cam-1/results", json.dumps(payload).encode())
    assert isinstance(row, ResultRow) and (row.device_id, row.boot_id, row.seq) == ("cam-1", boot, seq)


@pytest.mark.parametrize("topic, payload, why", [
    ("edgeagent/cam-1/results", b"\xff\xfe", "not UTF-8 JSON"),
    ("edgeagent/cam-1/results", b"[1, 2]", "not a JSON object"),
    ("edgeagent/cam-1/results", b'{"seq": 0}', "seq is missing"),
    ("edgeagent/cam-1/results", b'{"seq": true}', "seq is missing"),
    ("edgeagent/cam-1/results", b'{"seq": "3"}', "seq is missing"),
    ("edgeagent/cam-1/health", b'{"ts": "yesterday"}', "health without a valid ts"),
    ("other/cam-1/results", b'{"seq": 1}', "not a results or health topic"),
    ("edgeagent/cam-1/status", b'{"seq": 1}', "not a results or health topic"),
])
def test_bad_messages_are_rejected_with_a_reason(topic, payload, why):
    row = to_row("edgeagent", topic, payload)
    assert isinstance(row, Rejected) and why in row.reason


def test_health_rows_are_keyed_on_device_boot_and_ts():
    row = to_row("edgeagent", "edgeagent/cam-1/health", json.dumps(health("cam-1", "b" * 32, 3)).encode())
    assert isinstance(row, HealthRow)
    assert (row.device_id, row.boot_id, row.ts.second, row.fps, row.outbox_pending) == (
        "cam-1", "b" * 32, 3, 14.5, 3)


@pytest.mark.parametrize("dsn, shown", [
    ("postgresql://ingest:s3cret@db.example:5432/fleet", "postgresql://ingest:***@db.example:5432/fleet"),
    ("postgresql://ingest@db.example/fleet", "postgresql://ingest@db.example/fleet"),
    ("host=db port=5432 password=s3cret user=ingest", "host=db port=5432 password=*** user=ingest"),
    ("postgresql:///edgeagent", "postgresql:///edgeagent"),
])
def test_messages_show_the_dsn_without_its_password(dsn, shown):
    assert safe_dsn(dsn) == shown
