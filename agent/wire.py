"""The MQTT wire contract in code: topic names and the subscriber dedupe key (docs/mqtt.md).

Every topic is `<prefix>/<device_id>/<leaf>`; `topic()` is the one place that builds it, and
the leaf names below are the only spellings. Runs on devices too (Python 3.6)."""

from typing import Any, Mapping, Optional, Tuple

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
