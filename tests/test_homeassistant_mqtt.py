"""Home Assistant discovery and snapshots on detection end to end: the real agent, a real
Mosquitto, clients in the role of Home Assistant. The discovery payload the agent actually
published is validated with Home Assistant's own schemas."""

import json
import signal
import time

import cv2
import numpy as np

from broker import Subscriber, paho_client
from test_homeassistant import ha_validate

DEVICE = "ha-cam"
CONFIG_TOPIC = "homeassistant/device/%s/config" % DEVICE


def write_config(tmp_path, port, images_dir, discovery=True):
    path = tmp_path / "config.yaml"
    path.write_text("\n".join([
        "device: {id: %s}" % DEVICE, "pipeline: face-detect", "backend: onnxruntime",
        "source: images://%s" % images_dir, "camera: {loop: true}",
        "state_dir: %s" % (tmp_path / "state"),
        "mqtt: {host: 127.0.0.1, port: %d, reconnect: {initial_s: 0.1, max_s: 1}}" % port,
        "health: {interval_s: 1}", "commands: {enabled: true}",
        "homeassistant: {discovery: %s}" % ("true" if discovery else "false"),
        "snapshots: {labels: [face], min_interval_s: 3600}",
    ]) + "\n")
    return str(path)


def publish(port, topic, payload, retain=False):
    client = paho_client("home-assistant", clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def retained(port, topic, wait_s=1.5):
    """What a client that subscribes now gets as retained on `topic` (None: nothing)."""
    fresh = Subscriber(port, topic, client_id="fresh-%f" % time.monotonic(), persistent=False)
    try:
        fresh.wait_for(lambda msgs: len(msgs) > 0, wait_s)
        kept = [m for m in fresh.received() if m.retain]
        return kept[-1].payload if kept else None
    finally:
        fresh.close()


def configs(sub):
    return [m for m in sub.received() if m.topic == CONFIG_TOPIC]


def test_agent_publishes_discovery_resends_on_ha_online_and_removes_it_when_off(
        tmp_path, broker, sample_images_dir, start_agent):
    ha = Subscriber(broker.port, "homeassistant/#", client_id="ha")
    agent_topics = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE, client_id="watcher")
    agent = start_agent(["run", "--config", write_config(tmp_path, broker.port,
                                                         sample_images_dir)],
                        str(tmp_path / "agent.log"))
    try:
        # when the agent runs, then its discovery config arrives and is retained
        assert ha.wait_for(lambda msgs: configs(ha), 30), (tmp_path / "agent.log").read_text()
        payload = json.loads(configs(ha)[0].payload.decode())
        kept = retained(broker.port, CONFIG_TOPIC)
        assert kept is not None and json.loads(kept.decode()) == payload
        # and Home Assistant's own schemas accept exactly what was published
        [report] = ha_validate([{"prefix": "homeassistant", "topic": CONFIG_TOPIC,
                                 "payload": payload}])
        assert report["errors"] == []
        assert report["components"]["occupancy_face"] == "binary_sensor"
        assert {"take_snapshot", "reload", "update", "snapshot"} <= set(report["components"])
        # when Home Assistant (re)starts and says online, then the agent sends it again
        before = len(configs(ha))
        publish(broker.port, "homeassistant/status", b"online")
        assert ha.wait_for(lambda msgs: len(configs(ha)) > before, 15)
        # and occupancy follows the detections; one snapshot per label per min_interval_s
        occupancy = "edgeagent/%s/occupancy" % DEVICE
        assert agent_topics.wait_for(lambda msgs: any(
            m.topic == occupancy and json.loads(m.payload.decode()) == {"face": True}
            for m in msgs), 20)
        results_then = len(agent_topics.received("/results"))
        assert agent_topics.wait_for(
            lambda msgs: len(agent_topics.received("/results")) > results_then + 30, 30)
        snapshots = agent_topics.received("/snapshot")
        assert len(snapshots) == 1
        image = cv2.imdecode(np.frombuffer(snapshots[0].payload, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[2] == 3
        assert payload["components"]["snapshot"]["image_topic"] == snapshots[0].topic
        # when the agent dies, then its last will makes every entity unavailable in HA
        agent.send_signal(signal.SIGKILL)
        agent.wait(30)
        status_topic = payload["availability"][0]["topic"]
        assert agent_topics.wait_for(lambda msgs: any(
            m.topic == status_topic and json.loads(m.payload.decode())["state"] == "offline"
            for m in msgs), 30)
        will = retained(broker.port, status_topic)
        [report] = ha_validate([{"prefix": "homeassistant", "topic": CONFIG_TOPIC,
                                 "payload": payload, "samples": {status_topic: will.decode()}}])
        availability = {k: v for k, v in report["rendered"].items() if k.endswith(".availability")}
        assert len(availability) == len(payload["components"])
        assert set(availability.values()) == {"offline"}
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            assert agent.wait(30) == 0
    ha.close()
    agent_topics.close()
    # when the agent comes back with discovery switched off, then the config is removed
    ha = Subscriber(broker.port, CONFIG_TOPIC, client_id="ha-2", persistent=False)
    agent = start_agent(["run", "--config", write_config(tmp_path, broker.port, sample_images_dir,
                                                         discovery=False)],
                        str(tmp_path / "agent2.log"))
    try:
        assert ha.wait_for(lambda msgs: any(m.payload == b"" for m in msgs), 30), \
            (tmp_path / "agent2.log").read_text()
        assert retained(broker.port, CONFIG_TOPIC) is None
    finally:
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(30) == 0
        ha.close()
