"""The MQTT wire contract in code (docs/mqtt.md): topic names, schema ids, timestamps, JSON
bytes, the boot id, the status payload, the result payload's serialisation of Detections,
Classifications and FrameResult, and the subscriber dedupe key.

Every topic is `<prefix>/<device_id>/<leaf>`; `topic()` is the one place that builds it, and
the leaf names below are the only spellings. Runs on devices (Python 3.6) and workstations:
no numpy import here (values are read through their attributes)."""

import datetime
import json
import os
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import __version__

DEFAULT_PREFIX = "edgeagent"

# leaves of <prefix>/<device_id>/<leaf>
STATUS = "status"               # retained, QoS 1: online | stopped | offline (the last will)
RESULTS = "results"             # QoS mqtt.qos (default 1): one JSON per processed frame with results
HEALTH = "health"               # QoS 0: JSON every health.interval_s
SNAPSHOT = "snapshot"           # QoS 0: JPEG bytes
COMMAND = "command"             # QoS 1, to the device: {"id", "name", "args"}
COMMAND_REPLY = "command/reply"  # QoS 1, from the device: {"id", "ok", "error"?, "result"?}
LEAVES = (STATUS, RESULTS, HEALTH, SNAPSHOT, COMMAND, COMMAND_REPLY)

# status.state values
ONLINE = "online"
STOPPED = "stopped"
OFFLINE = "offline"

# payload "schema" values
RESULT_SCHEMA = "edgeagent/result/1"
HEALTH_SCHEMA = "edgeagent/health/1"
STATUS_SCHEMA = "edgeagent/status/1"
REPLY_SCHEMA = "edgeagent/command-reply/1"

DedupeKey = Tuple[str, str, int]

# New for each process start, in every result and health payload: subscribers dedupe on
# (device_id, boot_id, seq) (docs/outbox.md). 128 random bits, not uuid4: on Python 3.6
# (JetPack 4.6) `import uuid` runs ldconfig through subprocess and swallows a Ctrl-C that lands
# meanwhile (tests/test_cli_one_line.py).
BOOT_ID = os.urandom(16).hex()


def topic(prefix: str, device_id: str, leaf: str) -> str:
    """`<prefix>/<device_id>/<leaf>`, e.g. topic("edgeagent", "nano-01", RESULTS)."""
    return "%s/%s/%s" % (prefix, device_id, leaf)


def every_device(prefix: str, leaf: str) -> str:
    """The filter matching `leaf` of every device: `<prefix>/+/<leaf>`."""
    return topic(prefix, "+", leaf)


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: each message goes to one member of `group`."""
    return "$share/%s/%s" % (group, topic_filter)


def parse_topic(prefix: str, name: str) -> Optional[Tuple[str, str]]:
    """(device_id, leaf) of a topic under `prefix`, or None for anything else."""
    head = prefix + "/"
    if not name.startswith(head):
        return None
    device_id, sep, leaf = name[len(head):].partition("/")
    if not sep or not device_id or leaf not in LEAVES:
        return None
    return device_id, leaf


def dedupe_key(device_id: str, payload: Mapping[str, Any]) -> Optional[DedupeKey]:
    """(device_id, boot_id, seq): equal keys are the same message delivered again.

    A payload without `boot_id` (agents before it existed) counts as boot_id "". None when
    `seq` is not a positive integer: such a payload has no identity and is not a result."""
    seq = payload.get("seq")
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        return None
    boot_id = payload.get("boot_id")
    return device_id, boot_id if isinstance(boot_id, str) else "", seq


def utc_iso(ts: float) -> str:
    """ISO 8601 UTC with milliseconds and a Z, e.g. 2026-11-22T23:00:00.123Z."""
    moment = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def to_json_bytes(payload: Dict) -> bytes:
    """The payload encoding: compact JSON, UTF-8."""
    return json.dumps(payload, separators=(",", ":")).encode("utf-8")


def status_payload(state: str, device_id: str, pipeline: str, backend: str, ts: float) -> bytes:
    """The retained `status` payload (state: ONLINE | STOPPED | OFFLINE)."""
    return to_json_bytes({"schema": STATUS_SCHEMA, "state": state, "device_id": device_id,
                          "ts": utc_iso(ts), "version": __version__, "pipeline": pipeline,
                          "backend": backend})


def labels_of(found: Any) -> Tuple[str, ...]:
    """Detections' or Classifications' labels; the class ids where they are unnamed."""
    from .types import class_labels   # types imports numpy: only where results exist
    return found.labels or class_labels((), found.class_ids)


def detections_payload(detections: Any) -> List[dict]:
    """The result payload's `detections` list."""
    labels = labels_of(detections)
    return [{"label": labels[i], "class_id": int(detections.class_ids[i]),
             "score": round(float(detections.scores[i]), 4),
             "box": [round(float(v), 1) for v in detections.boxes[i]]}
            for i in range(len(detections))]


def classifications_payload(classifications: Any) -> List[dict]:
    """The result payload's `classifications` list, best first."""
    labels = labels_of(classifications)
    return [{"label": labels[i], "class_id": int(classifications.class_ids[i]),
             "score": round(float(classifications.scores[i]), 4)}
            for i in range(len(classifications))]


def found_payload(found: Any) -> List[dict]:
    """detections_payload or classifications_payload, whichever `found` is."""
    if hasattr(found, "boxes"):
        return detections_payload(found)
    return classifications_payload(found)


def frame_result_body(result: Any) -> Dict:
    """A FrameResult's part of the result payload: ts, timing_ms, frame and what was found
    (the reporter adds schema, device_id, boot_id, pipeline, model, backend and seq)."""
    timing = {k: round(v, 2) for k, v in result.timing_ms.items()}
    timing["total"] = round(sum(result.timing_ms.values()), 2)
    body = {"ts": utc_iso(result.ts), "timing_ms": timing,
            "frame": {"index": result.frame_index, "width": result.width,
                      "height": result.height}}
    if result.file:
        body["frame"]["file"] = result.file
    if result.detections is not None:
        body["detections"] = detections_payload(result.detections)
    if result.classifications is not None:
        body["classifications"] = classifications_payload(result.classifications)
    return body
