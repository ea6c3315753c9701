"""A received message -> the row it becomes, or the one-line reason it is rejected. No I/O."""

import datetime
import json
from typing import NamedTuple, Optional, Union

from ... import wire


class ResultRow(NamedTuple):
    device_id: str
    boot_id: str
    seq: int
    ts: Optional[datetime.datetime]
    pipeline: Optional[str]
    model: Optional[str]
    backend: Optional[str]
    payload: str                 # the JSON text as received


class HealthRow(NamedTuple):
    device_id: str
    boot_id: str
    ts: datetime.datetime
    state: Optional[str]
    fps: Optional[float]
    outbox_pending: Optional[int]
    outbox_dropped: Optional[int]
    payload: str


class Rejected(NamedTuple):
    reason: str


Row = Union[ResultRow, HealthRow]


def parse_ts(value) -> Optional[datetime.datetime]:
    """The contract's `2026-11-22T23:00:00.123Z` (seconds without fraction accepted too)."""
    if not isinstance(value, str) or not value.endswith("Z"):
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            return datetime.datetime.strptime(value, fmt).replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            continue
    return None


def to_row(prefix: str, topic: str, payload: bytes) -> Union[Row, Rejected]:
    where = wire.parse_topic(prefix, topic)
    if where is None or where[1] not in (wire.RESULTS, wire.HEALTH):
        return Rejected("%s: not a results or health topic under %s/" % (topic, prefix))
    device_id, leaf = where
    try:
        text = payload.decode("utf-8")
        data = json.loads(text)
    except ValueError:                      # UnicodeDecodeError is a ValueError
        return Rejected("%s: not UTF-8 JSON" % topic)
    if not isinstance(data, dict):
        return Rejected("%s: payload is not a JSON object" % topic)
    if "\u0000" in text or "\\u0000" in text:
        return Rejected("%s: payload contains NUL, which PostgreSQL jsonb cannot store" % topic)
    if leaf == wire.RESULTS:
        return _result(device_id, data, text, topic)
    return _health(device_id, data, text, topic)


def _result(device_id: str, data: dict, text: str, topic: str) -> Union[ResultRow, Rejected]:
    key = wire.dedupe_key(device_id, data)
    if key is None:
        return Rejected("%s: seq is missing or not a positive integer" % topic)
    return ResultRow(device_id, key[1], key[2], parse_ts(data.get("ts")), _str(data, "pipeline"),
                     _str(data, "model"), _str(data, "backend"), text)


def _health(device_id: str, data: dict, text: str, topic: str) -> Union[HealthRow, Rejected]:
    ts = parse_ts(data.get("ts"))
    if ts is None:
        return Rejected("%s: health without a valid ts (e.g. 2026-11-22T23:00:00.123Z)" % topic)
    boot_id = data.get("boot_id")
    fps = data.get("fps") if isinstance(data.get("fps"), dict) else {}
    outbox = data.get("outbox") if isinstance(data.get("outbox"), dict) else {}
    return HealthRow(device_id, boot_id if isinstance(boot_id, str) else "", ts,
                     _str(data, "state"), _number(fps.get("processed")),
                     _int(outbox.get("pending")), _int(outbox.get("dropped")), text)


def _str(data: dict, key: str) -> Optional[str]:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _number(value) -> Optional[float]:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _int(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
