"""What the MQTT link tests share: the device, payloads, settings, a started publisher and a broker."""

import json
import os
import time

import pytest

from agent.mqtt.link import MqttLink
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.mqtt.settings import MqttSettings
from broker import Broker, Subscriber

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE = "dev1"
RESULTS = "edgeagent/%s/results" % DEVICE


def status_payload(state: str) -> bytes:
    return json.dumps({"state": state, "ts": time.time()}).encode()


def result_payload(seq: int) -> bytes:
    return json.dumps({"schema": "edgeagent/result/1", "device_id": DEVICE, "seq": seq}).encode()


def settings_for(port: int, **extra) -> MqttSettings:
    config = {"host": "127.0.0.1", "port": port, "keepalive_s": 5,
              "reconnect": {"initial_s": 0.1, "max_s": 1.0}}
    config.update(extra)
    return MqttSettings.from_dict(config, "test.yaml")


def start_publisher(tmp_path, port: int, **extra) -> Publisher:
    outbox = Outbox(str(tmp_path / "outbox.sqlite"), commit_interval_ms=50)
    link = MqttLink(settings_for(port, **extra), DEVICE, status_payload)
    publisher = Publisher(link, outbox)
    publisher.start()
    assert link.wait_connected(10), link.last_error
    return publisher


def states(subscriber: Subscriber):
    return [m.json()["state"] for m in subscriber.received("/status")]


@pytest.fixture
def broker(tmp_path):
    with Broker(tmp_path / "broker") as running:
        yield running
