"""Remote commands end to end: a running agent, a real mosquitto, a real client sending
commands and reading replies and snapshots. Every reply is validated against its schema."""

import json
import os
import signal
import time

import cv2
import numpy as np

from broker import Subscriber, paho_client

DEVICE = "cmd-cam"


def write_config(tmp_path, port, enabled=True):
    path = tmp_path / "config.yaml"
    path.write_text("\n".join([
        "device: {id: %s}" % DEVICE, "pipeline: face-detect", "backend: onnxruntime",
        "state_dir: %s" % (tmp_path / "state"),
        "mqtt: {host: 127.0.0.1, port: %d}" % port,
        "camera: {loop: true}", "commands: {enabled: %s}" % ("true" if enabled else "false"),
    ]) + "\n")
    return str(path)


def send_commands(port, payloads):
    client = paho_client("operator", clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for payload in payloads:
        client.publish("edgeagent/%s/command" % DEVICE, payload, qos=1).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def wait_running(subscriber, timeout_s=30):
    assert subscriber.wait_for(lambda msgs: any(m.topic.endswith("/results") for m in msgs),
                               timeout_s), "agent published no result"
    time.sleep(0.5)     # the command subscription is made at connect, before the first result


def test_commands_over_mqtt_ping_snapshot_and_refusals(tmp_path, broker, sample_video,
                                                       start_agent, schema_validator):
    # given a running agent with commands enabled, looping the sample video
    watcher = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE, client_id="watcher")
    agent = start_agent(["run", "--config", write_config(tmp_path, broker.port), "--source",
                         "file://%s?loop=1" % sample_video], str(tmp_path / "agent.log"))
    try:
        wait_running(watcher)
        # when an operator sends ping, snapshot, an unknown name, bad JSON and an oversized one
        send_commands(broker.port, [
            json.dumps({"id": "p1", "name": "ping"}),
            json.dumps({"id": "s1", "name": "snapshot", "args": {"quality": 70}}),
            json.dumps({"id": "x1", "name": "shutdown"}),
            b"{not json",
            json.dumps({"id": "big", "name": "ping", "args": {"pad": "x" * 100000}}),
        ])
        assert watcher.wait_for(lambda msgs: sum(m.topic.endswith("/command/reply")
                                                 for m in msgs) >= 5, 15)
        replies = [schema_validator.validate("command_reply", m.payload)
                   for m in watcher.received("/command/reply")]
        snapshots = watcher.received("/snapshot")
        alive = agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        watcher.close()
    by_id = {r["id"]: r for r in replies}
    # then ping and snapshot succeed, the rest are refused with a reason, the agent lives on
    assert alive and agent.returncode == 0
    assert by_id["p1"]["ok"] and by_id["p1"]["result"]["pong"] is True
    assert by_id["s1"]["ok"] and by_id["s1"]["result"]["bytes"] == len(snapshots[0].payload)
    assert not by_id["x1"]["ok"] and "unknown command" in by_id["x1"]["error"]
    assert any(r["id"] is None and "not UTF-8 JSON" in r["error"] for r in replies)
    assert any(not r["ok"] and "byte limit" in r["error"] for r in replies)
    # and the snapshot is a real JPEG of the frame with the face box drawn on it
    image = cv2.imdecode(np.frombuffer(snapshots[0].payload, np.uint8), cv2.IMREAD_COLOR)
    assert image.shape == (480, 640, 3)
    drawn = np.all(image == (0, 200, 255), axis=2) | (
        (np.abs(image.astype(int) - (0, 200, 255)).sum(axis=2)) < 60)
    assert drawn.sum() > 200, "no box drawn in the snapshot"


def test_commands_are_off_by_default(tmp_path, broker, sample_video, start_agent):
    # given a running agent whose config does not enable commands
    watcher = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE, client_id="watcher2")
    agent = start_agent(["run", "--config", write_config(tmp_path, broker.port, enabled=False),
                         "--source", "file://%s?loop=1" % sample_video], str(tmp_path / "a.log"))
    try:
        wait_running(watcher)
        # when a ping arrives
        send_commands(broker.port, [json.dumps({"id": "p1", "name": "ping"})])
        time.sleep(1.5)
        replies = watcher.received("/command/reply")
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(15)
        watcher.close()
    # then nobody answers
    assert replies == []


def test_snapshot_right_after_a_reload_and_hostile_payloads_over_mqtt(
        tmp_path, broker, sample_video, start_agent, schema_validator):
    # given a running agent with commands enabled
    watcher = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE, client_id="watcher3")
    log_path = str(tmp_path / "agent.log")
    agent = start_agent(["run", "--config", write_config(tmp_path, broker.port), "--source",
                         "file://%s?loop=1" % sample_video], log_path)
    hostile = [b"[" * 10000 + b"]" * 10000, b"x" * (2 * 1024 * 1024), os.urandom(3000),
               b'{"id":"d","name":"ping","args":' + b"[" * 2000 + b"]" * 2000 + b"}",
               json.dumps({"id": 5, "name": ["ping"], "args": "x"}).encode()] * 20
    try:
        wait_running(watcher)
        # when a reload is done and a snapshot is asked for the moment the new pipeline runs
        send_commands(broker.port, [json.dumps({"id": "r1", "name": "reload"})])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(log_path) as handle:
                if handle.read().count("running face-detect on") >= 2:
                    break
            time.sleep(0.005)
        send_commands(broker.port, [json.dumps({"id": "s1", "name": "snapshot"})] + hostile +
                      [json.dumps({"id": "p9", "name": "ping"})])
        assert watcher.wait_for(lambda msgs: sum(m.topic.endswith("/command/reply")
                                                 for m in msgs) >= 103, 60)
        replies = [schema_validator.validate("command_reply", m.payload)
                   for m in watcher.received("/command/reply")]
        snapshots = watcher.received("/snapshot")
        alive = agent.poll() is None
    finally:
        agent.send_signal(signal.SIGTERM)
        agent.wait(30)
        watcher.close()
    by_id = {r["id"]: r for r in replies}
    # then the snapshot used the last frame (the tap outlives the reload)
    assert by_id["s1"]["ok"], by_id["s1"]
    assert snapshots and snapshots[0].payload[:2] == b"\xff\xd8"
    # and every hostile payload got a refusal, the agent lived on and logged no traceback
    assert sum(1 for r in replies if not r["ok"]) == 100
    assert alive and by_id["p9"]["ok"] and agent.returncode == 0
    with open(log_path) as handle:
        assert "Traceback" not in handle.read()
