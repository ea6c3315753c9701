"""Home Assistant discovery payloads, checked with Home Assistant's own code (2025.4.4, in the
venv .ci/ha-venv builds; tests/ha_validate.py runs HA's discovery steps and schemas), and the
discovery publisher's behaviour with a recording publisher."""

import json
import os
import subprocess
import threading
import time

import pytest

from agent.config.dashboards_config import HomeAssistantSettings
from agent.outputs.health import HealthMonitor
from agent.types import BackendInfo
from agent.outputs.homeassistant import (Discovery, DiscoveryInput, config_topic, discovery_payload,
                                 encode, node_id)
from agent.outputs.occupancy import Occupancy, occupancy_payload
from agent.mqtt.settings import MqttSettings
from agent.outputs.reporter import status_payload
from agent.stats import PipelineStats

HERE = os.path.dirname(os.path.abspath(__file__))
HA_VERSION = "2025.4.4"
# make and .ci/run set EDGEAGENT_HA_PYTHON; else the Makefile's default, else CI's cache
HA_PYTHON = os.environ.get("EDGEAGENT_HA_PYTHON") or next(
    (p for p in (os.path.join(os.path.dirname(HERE), ".venv-ha", "bin", "python"),
                 "/var/cache/edgeagent-ci/ha-%s/bin/python" % HA_VERSION) if os.path.isfile(p)),
    os.path.join(os.path.dirname(HERE), ".venv-ha", "bin", "python"))
MQTT = MqttSettings()


def info(device_id="nano-01", commands=True, labels=("face",), temperatures=("cpu", "gpu"),
         prefix="homeassistant", interval_s=10.0):
    return DiscoveryInput(device_id, lambda leaf: MQTT.topic(device_id, leaf),
                          HomeAssistantSettings(discovery=True, prefix=prefix),
                          "NVIDIA Jetson Nano", "jetson-nano", tuple(labels),
                          tuple(temperatures), commands, interval_s)


class _Sensors:
    def read(self):
        return {"cpu_percent": 41.5, "mem_used_mb": 812, "mem_total_mb": 3956,
                "temps_c": {"cpu": 48.5, "gpu": 46.0}}


class _Now:
    """The service's Current as health asks it: no source yet, onnxruntime loaded."""

    def __init__(self, state):
        self.state = state

    def source(self):
        return None

    def backend_info(self):
        return BackendInfo("onnxruntime", "fp32", "cpu")

    def system(self):
        return _Sensors().read()

    def health_interval_s(self):
        return 10.0


def health_payload(state="running"):
    """A health payload built by the agent's own HealthMonitor."""
    stats = PipelineStats()
    stats.count_captured(3)
    stats.count_processed({"preprocess": 1.0, "infer": 12.5, "postprocess": 0.5})
    monitor = HealthMonitor("nano-01", stats, _Now(state), lambda data: None,
                            lambda: {"pending": 7, "dropped": 2, "bytes": 900})
    return json.dumps(monitor.snapshot().to_payload("nano-01"))


def ha_validate(messages):
    if not os.path.isfile(HA_PYTHON):
        pytest.fail("Home Assistant %s venv missing at %s: build it with `make ha-venv` (or "
                    "`.ci/ha-venv DIR` and EDGEAGENT_HA_PYTHON=DIR/bin/python)" % (
                        HA_VERSION, HA_PYTHON))
    proc = subprocess.run([HA_PYTHON, os.path.join(HERE, "ha_validate.py")],
                          input=json.dumps(messages).encode(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    report = json.loads(proc.stdout.decode())
    assert report["ha_version"] == HA_VERSION
    return report["messages"]


def message(payload_info, samples=None):
    return {"prefix": payload_info.settings.prefix,
            "topic": config_topic(payload_info.settings.prefix, payload_info.device_id),
            "payload": json.loads(encode(discovery_payload(payload_info)).decode()),
            "samples": samples or {}}


CASES = {
    "jetson_commands_one_label": info(),
    "no_commands_no_labels_no_temps": info(commands=False, labels=(), temperatures=()),
    "coco_labels_dotted_id": info(device_id="cam.garage-2", labels=("person", "car", "dog"),
                                  temperatures=("x86_pkg_temp",)),
    "own_prefix": info(prefix="ha/discovery"),
}


def test_every_discovery_payload_passes_home_assistants_own_schemas():
    # given the payloads of several configurations, and sample payloads of the agent's topics
    running = {MQTT.topic("nano-01", "health"): health_payload("running"),
               MQTT.topic("nano-01", "status"): status_payload("online", "nano-01", "face-detect",
                                                               "onnxruntime", 0.0).decode(),
               MQTT.topic("nano-01", "occupancy"): occupancy_payload({"face": True}).decode()}
    lost = {MQTT.topic("nano-01", "health"): health_payload("camera_lost"),
            MQTT.topic("nano-01", "status"): status_payload("offline", "nano-01", "", "",
                                                            0.0).decode(),
            MQTT.topic("nano-01", "occupancy"): occupancy_payload({"face": False}).decode()}
    messages = [message(i) for i in CASES.values()] + [message(info(), running),
                                                       message(info(), lost)]
    # when Home Assistant validates them
    reports = ha_validate(messages)
    # then nothing is invalid, nothing dropped, nothing warned; only keys newer than 2025.4.4
    for name, report in zip(list(CASES) + ["running", "lost"], reports):
        assert report["errors"] == [], (name, report["errors"])
        assert all("default_entity_id" in k for k in report["ignored"]), report["ignored"]
    # and HA reads our own payloads as intended
    on, off = reports[-2]["rendered"], reports[-1]["rendered"]
    assert float(on["fps"]) >= 0 and on["inference_ms"] == "12.5"
    assert (on["cpu"], on["memory"], on["temp_cpu"], on["temp_gpu"]) == ("41.5", "812", "48.5",
                                                                         "46.0")
    assert (on["outbox_pending"], on["outbox_dropped"]) == ("7", "2")
    assert (on["problem"], off["problem"]) == ("OFF", "ON")
    assert (on["occupancy_face"], off["occupancy_face"]) == ("ON", "OFF")
    assert (on["fps.availability"], off["fps.availability"]) == ("online", "offline")
    assert json.loads(on["update"])["installed_version"] == json.loads(
        status_payload("online", "x", "", "", 0).decode())["version"]


SPOILT = [      # (how a valid payload is spoilt, what HA's check must report)
    (lambda p: p["components"]["fps"].update(bogus_key=1), "HA dropped bogus_key"),
    (lambda p: p["components"]["temp_cpu"].update(unit_of_measurement="MB"), "HA warned"),
    (lambda p: p["components"]["memory"].update(device_class="megabytes"), "device_class"),
    (lambda p: p["device"].update(colour="red"), "colour"),
    (lambda p: p["components"]["problem"].update(value_template="{{ value_json. }}"),
     "template"),
    (lambda p: p["components"]["snapshot"].pop("image_topic"), "image_topic"),
]


def test_the_schema_check_fails_on_what_home_assistant_would_drop_or_refuse():
    # given valid payloads each spoilt in one way
    spoilt = []
    for mutate, _ in SPOILT:
        spoilt.append(message(info()))
        mutate(spoilt[-1]["payload"])
    # when HA validates them (one HA start for all), then each one problem is reported
    for report, (_, expected) in zip(ha_validate(spoilt), SPOILT):
        assert any(expected in error for error in report["errors"]), (expected, report["errors"])


def test_payload_follows_current_conventions():
    payload = discovery_payload(info())
    components = payload["components"]
    unique_ids = [c["unique_id"] for c in components.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    assert all("object_id" not in c for c in components.values())
    assert components["fps"]["default_entity_id"] == "sensor.edgeagent_nano_01_fps"
    assert payload["availability"][0]["topic"] == "edgeagent/nano-01/status"
    assert components["snapshot"]["image_topic"] == "edgeagent/nano-01/snapshot"
    assert {"take_snapshot", "reload"} <= set(components)
    assert json.loads(components["reload"]["payload_press"])["name"] == "reload"
    assert "take_snapshot" not in discovery_payload(info(commands=False))["components"]
    assert config_topic("ha", "cam.garage 2") == "ha/device/cam_garage_2/config"
    assert node_id("a/b") == "a_b"


@pytest.mark.parametrize("labels, pipeline_labels, expected", [
    (None, ("face",), ("face",)),
    (None, tuple("l%d" % i for i in range(80)), ()),       # COCO: name them in the config
    (("person", "car"), tuple("l%d" % i for i in range(80)), ("person", "car")),
    ((), ("face",), ()),
])
def test_occupancy_labels(labels, pipeline_labels, expected):
    assert HomeAssistantSettings(labels=labels).occupancy_labels(pipeline_labels) == expected


class RecordingPublisher:
    def __init__(self, online=True):
        self.online = online
        self.sent = []
        self.subscriptions = {}
        self.changed = threading.Condition()

    def send_now(self, topic, payload, qos=0, retain=False):
        with self.changed:
            if not self.online:
                return False
            self.sent.append((topic, payload, qos, retain))
            self.changed.notify_all()
            return True

    def subscribe(self, topic, callback):
        self.subscriptions[topic] = callback

    def wait(self, predicate, timeout_s=10.0):
        deadline = time.monotonic() + timeout_s
        with self.changed:
            while not predicate(self.sent):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True


def start_discovery(publisher, state_dir, discovery=True, prefix="homeassistant"):
    settings = HomeAssistantSettings(discovery=discovery, prefix=prefix)
    topic = config_topic(prefix, "nano-01")
    return Discovery(publisher, settings, topic, b'{"x":1}', str(state_dir),
                     jitter_s=0.2).start()


def test_discovery_is_retained_resent_on_ha_online_and_removed_when_switched_off(tmp_path):
    # given discovery on, while the broker is not reachable yet
    publisher = RecordingPublisher(online=False)
    discovery = start_discovery(publisher, tmp_path)
    try:
        # when the link comes up, then the retained config goes out (QoS 1)
        publisher.online = True
        assert publisher.wait(lambda sent: len(sent) == 1)
        assert publisher.sent[0] == ("homeassistant/device/nano-01/config", b'{"x":1}', 1, True)
        # when HA says online, then it is sent again; other payloads on that topic do nothing
        publisher.subscriptions["homeassistant/status"]("homeassistant/status", b"offline")
        publisher.subscriptions["homeassistant/status"]("homeassistant/status", b"online")
        assert publisher.wait(lambda sent: len(sent) == 2)
        time.sleep(0.2)
        assert len(publisher.sent) == 2
    finally:
        discovery.stop()
    # when the agent starts again with discovery off, then an empty retained payload removes it
    publisher = RecordingPublisher()
    discovery = start_discovery(publisher, tmp_path, discovery=False)
    try:
        assert publisher.wait(lambda sent: len(sent) == 1)
        assert publisher.sent[0] == ("homeassistant/device/nano-01/config", b"", 1, True)
        assert "homeassistant/status" not in publisher.subscriptions
    finally:
        discovery.stop()
    # and once removed, a later start with discovery off publishes nothing
    publisher = RecordingPublisher()
    discovery = start_discovery(publisher, tmp_path, discovery=False)
    time.sleep(0.3)
    discovery.stop()
    assert publisher.sent == []


def test_a_new_prefix_removes_the_config_under_the_old_one(tmp_path):
    publisher = RecordingPublisher()
    start_discovery(publisher, tmp_path).stop()
    publisher = RecordingPublisher()
    discovery = start_discovery(publisher, tmp_path, prefix="ha")
    try:
        assert publisher.wait(lambda sent: len(sent) == 2)
        assert [(t, p) for t, p, _, _ in publisher.sent] == [
            ("homeassistant/device/nano-01/config", b""), ("ha/device/nano-01/config", b'{"x":1}')]
    finally:
        discovery.stop()


@pytest.mark.parametrize("events, now, expected", [
    ([], 10.0, {"face": False, "person": False}),
    ([(["face"], 9.0)], 10.0, {"face": True, "person": False}),
    ([(["face"], 4.0)], 10.0, {"face": False, "person": False}),      # held 5 s, then off
    ([(["face", "person"], 8.0), (["dog"], 9.5)], 10.0, {"face": True, "person": True}),
])
def test_occupancy_holds_each_label_for_hold_s(events, now, expected):
    occupancy = Occupancy(("face", "person"), hold_s=5.0, refresh_s=10.0)
    for labels, at in events:
        occupancy.observe(labels, at)
    assert occupancy.states(now) == expected


def test_occupancy_publishes_on_change_and_on_refresh():
    occupancy = Occupancy(("face",), hold_s=5.0, refresh_s=10.0)
    assert occupancy.poll(0.0) == b'{"face":false}'
    assert occupancy.poll(1.0) is None
    occupancy.observe(["face"], 2.0)
    assert occupancy.poll(2.1) == b'{"face":true}'
    assert occupancy.poll(6.0) is None
    assert occupancy.poll(7.5) == b'{"face":false}'          # hold over
    assert occupancy.poll(17.0) is None
    assert occupancy.poll(17.6) == b'{"face":false}'         # refresh for expire_after
