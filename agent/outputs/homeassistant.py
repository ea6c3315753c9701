"""Home Assistant MQTT discovery, device based: one retained `<prefix>/device/<id>/config` that
declares every entity of this agent (docs/homeassistant.md).

Availability of every entity is the agent's retained status topic, so its `offline` last will
makes them all unavailable. The payload is published when the agent starts, again whenever Home
Assistant announces `online` on `<prefix>/status` (after a random delay: a fleet must not answer
in lockstep), and replaced by an empty retained payload (which removes the device) when
discovery is switched off. Entities follow HA's current naming: no `object_id`;
`default_entity_id` says which entity id to create (HA before 2025.10 ignores it and derives
the same id from the device and entity names).

Runs on any MQTT publisher with send_now(topic, payload, qos, retain) and subscribe(topic, cb)."""

import json
import logging
import os
import random
import re
import threading
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Callable, Dict, List, Optional, Tuple

from .. import __version__, wire
from ..config.dashboards_config import HomeAssistantSettings
from ..types import CAMERA_LOST

log = logging.getLogger(__name__)

MARKER_FILE = "homeassistant-discovery.json"   # in state_dir: which topic we published to
REPUBLISH_JITTER_S = 3.0
RETRY_S = 1.0
DEGRADED_STATES = (CAMERA_LOST, "degraded")   # health states shown as a problem
OCCUPANCY_LEAF = "occupancy"
SNAPSHOT_LEAF = wire.SNAPSHOT


@dataclass(frozen=True)
class DiscoveryInput:
    """What the discovery payload depends on, gathered by the composition root."""

    device_id: str
    topic: Callable[[str], str]          # leaf -> <mqtt prefix>/<device>/<leaf>
    settings: HomeAssistantSettings
    board: str = "unknown"               # device model
    profile: str = ""
    labels: Tuple[str, ...] = ()         # occupancy sensors
    temperatures: Tuple[str, ...] = ()   # names under health system.temps_c
    commands: bool = False               # buttons need remote commands
    health_interval_s: float = 10.0
    version: str = __version__


def node_id(device_id: str) -> str:
    """The device id as HA allows it in a discovery topic ([a-zA-Z0-9_-])."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", device_id)


def config_topic(prefix: str, device_id: str) -> str:
    return "%s/device/%s/config" % (prefix, node_id(device_id))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "x"


def discovery_payload(info: DiscoveryInput) -> Dict[str, object]:
    node = node_id(info.device_id)
    base = "edgeagent_%s" % _slug(node)
    status = info.topic(wire.STATUS)
    components = {}          # type: Dict[str, Dict[str, object]]

    def add(key: str, platform: str, name: str, **options) -> None:
        entity = dict(platform=platform, name=name, unique_id="%s_%s" % (base, key),
                      default_entity_id="%s.%s_%s" % (platform, base, _slug(name)))
        entity.update(options)
        components[key] = entity

    for key, name, options in _health_sensors(info):
        add(key, "sensor", name, state_topic=info.topic(wire.HEALTH), **options)
    expire = int(max(30, 3 * info.health_interval_s))
    add("problem", "binary_sensor", "Problem", device_class="problem",
        entity_category="diagnostic", state_topic=info.topic(wire.HEALTH), expire_after=expire,
        value_template="{{ 'ON' if value_json.state in %s else 'OFF' }}" % (
            list(DEGRADED_STATES),))
    for label in info.labels:
        add("occupancy_" + _slug(label), "binary_sensor", "%s detected" % label.capitalize(),
            device_class="occupancy", state_topic=info.topic(OCCUPANCY_LEAF), expire_after=expire,
            value_template="{{ 'ON' if value_json.get(%s) else 'OFF' }}" % json.dumps(label))
    add("snapshot", "image", "Snapshot", image_topic=info.topic(SNAPSHOT_LEAF),
        content_type="image/jpeg")
    if info.commands:
        command = info.topic(wire.COMMAND)
        add("take_snapshot", "button", "Take snapshot", command_topic=command, qos=1,
            payload_press=_command("ha-snapshot", "snapshot"), icon="mdi:camera")
        add("reload", "button", "Reload", command_topic=command, qos=1,
            payload_press=_command("ha-reload", "reload"), device_class="restart",
            entity_category="config")
    add("update", "update", "Agent", state_topic=status, title="edgeagent",
        entity_category="diagnostic",
        value_template="{{ {'installed_version': value_json.version, "
                       "'latest_version': value_json.version} | tojson }}")
    return {
        "device": {"identifiers": [base], "name": "edgeagent %s" % info.device_id,
                   "manufacturer": "edgeagent", "model": info.board,
                   "model_id": info.profile or "unknown", "sw_version": info.version},
        "origin": {"name": "edgeagent", "sw_version": info.version},
        "availability": [{"topic": status, "payload_available": "online",
                          "payload_not_available": "offline",
                          "value_template": "{{ 'online' if value_json.state == 'online' "
                                            "else 'offline' }}"}],
        "components": components,
    }


def _health_sensors(info: DiscoveryInput) -> List[Tuple[str, str, Dict[str, object]]]:
    def opt(path: str, key: str) -> str:    # "None" is HA's "no value" for an MQTT sensor
        return "{{ value_json.%s.%s if '%s' in value_json.%s else None }}" % (path, key, key, path)

    diag = {"entity_category": "diagnostic", "state_class": "measurement"}
    sensors = [
        ("fps", "FPS", dict(unit_of_measurement="fps", state_class="measurement",
                            suggested_display_precision=1, icon="mdi:speedometer",
                            value_template="{{ value_json.fps.processed }}")),
        ("inference_ms", "Inference time", dict(
            device_class="duration", unit_of_measurement="ms", state_class="measurement",
            suggested_display_precision=1,
            value_template="{{ value_json.latency_ms.infer.p50 if 'infer' in "
                           "value_json.latency_ms else None }}")),
        ("cpu", "CPU", dict(diag, unit_of_measurement="%", icon="mdi:cpu-64-bit",
                            value_template=opt("system", "cpu_percent"))),
        ("memory", "Memory used", dict(diag, device_class="data_size", unit_of_measurement="MB",
                                       value_template=opt("system", "mem_used_mb"))),
    ]
    for name in info.temperatures:
        sensors.append(("temp_" + _slug(name), "%s temperature" % name.upper(), dict(
            diag, device_class="temperature", unit_of_measurement="°C",
            value_template="{{ value_json.system.temps_c[%s] if %s in "
                           "value_json.system.get('temps_c', {}) else None }}" % (
                               json.dumps(name), json.dumps(name)))))
    sensors += [
        ("outbox_pending", "Outbox pending", dict(
            diag, unit_of_measurement="messages", icon="mdi:tray-full",
            value_template="{{ value_json.outbox.pending }}")),
        ("outbox_dropped", "Outbox dropped", dict(
            diag, state_class="total_increasing", unit_of_measurement="messages",
            icon="mdi:tray-remove", value_template="{{ value_json.outbox.dropped }}")),
    ]
    return sensors


def _command(command_id: str, name: str) -> str:
    return json.dumps({"id": command_id, "name": name}, separators=(",", ":"))


def encode(payload: Dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True,
                      ensure_ascii=False).encode("utf-8")


class Discovery:
    """Keeps the retained discovery config on the broker, or removes it when switched off.

    publisher: send_now(topic, payload, qos, retain) -> bool (False when offline) and
    subscribe(topic, callback). state_dir remembers the topic we published to, so switching
    discovery off (or changing the prefix) removes what was there."""

    def __init__(self, publisher, settings: HomeAssistantSettings, topic: str, payload: bytes,
                 state_dir: str, rng: Optional[random.Random] = None,
                 jitter_s: float = REPUBLISH_JITTER_S) -> None:
        self._publisher = publisher
        self.settings = settings
        self.topic = topic
        self.payload = payload
        self._marker = os.path.join(state_dir, MARKER_FILE)
        self._rng = rng or random.Random()
        self._jitter_s = jitter_s
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._due = []           # type: List[Tuple[str, bytes]]
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="ha-discovery", daemon=True)
        self.published = 0

    def start(self) -> "Discovery":
        previous = self._read_marker()
        if previous is not None and (not self.settings.discovery or previous != self.topic):
            log.info("homeassistant: removing the discovery config at %s", previous)
            self._queue(previous, b"")
        if not self.settings.discovery and not self._due:
            return self           # nothing published before, nothing to do: no thread
        if self.settings.discovery:
            self._queue(self.topic, self.payload)
            status = "%s/status" % self.settings.prefix
            self._publisher.subscribe(status, self._on_ha_status)
            log.info("homeassistant: discovery on %s (re-sent when %s says online)",
                     self.topic, status)
        self._thread.start()
        return self

    def update(self, payload: bytes) -> None:
        """A new payload (the pipeline changed at a reload): re-publish when it differs."""
        if payload != self.payload and self.settings.discovery:
            self.payload = payload
            self._queue(self.topic, payload)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        """MQTT network thread: note only; the worker publishes after a random delay."""
        if payload.strip().lower() == b"online":
            delay = self._rng.uniform(0, self._jitter_s)
            log.info("homeassistant: %s online; re-sending discovery in %.1f s", topic, delay)
            timer = threading.Timer(delay, lambda: self._queue(self.topic, self.payload))
            timer.daemon = True
            timer.start()

    def _queue(self, topic: str, payload: bytes) -> None:
        with self._lock:
            self._due = [item for item in self._due if item[0] != topic] + [(topic, payload)]
        self._wake.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(RETRY_S)
            self._wake.clear()
            with self._lock:
                due, self._due = self._due, []
            failed = [item for item in due if not self._send(*item)]
            if failed:
                with self._lock:
                    self._due = failed + [i for i in self._due if i[0] not in dict(failed)]

    def _send(self, topic: str, payload: bytes) -> bool:
        try:
            sent = self._publisher.send_now(topic, payload, qos=1, retain=True)
        except Exception:  # a broken link must not end discovery; the next round retries
            log.exception("homeassistant: publishing %s failed", topic)
            return False
        if sent:
            self.published += 1
            self._write_marker(topic if payload else None)
        return bool(sent)

    def _read_marker(self) -> Optional[str]:
        try:
            with open(self._marker) as handle:
                return json.load(handle).get("topic")
        except (IOError, OSError, ValueError, AttributeError):
            return None

    def _write_marker(self, topic: Optional[str]) -> None:
        try:
            if topic is None:
                if self._read_marker() != self.topic or not self.settings.discovery:
                    os.remove(self._marker)
                return
            tmp = self._marker + ".tmp"
            with open(tmp, "w") as handle:
                json.dump({"topic": topic}, handle)
            os.replace(tmp, self._marker)
        except (IOError, OSError) as why:
            log.warning("homeassistant: cannot record %s: %s", self._marker, why)
