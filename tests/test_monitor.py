"""`edgeagent monitor` against a real mosquitto: retained status, health, and the seq stream
with duplicates dropped and gaps counted."""

import json
import os
import subprocess
import sys
import time

from broker import Broker, paho_client

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def publish_all(port, messages):
    client = paho_client("test-device-sim", clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload, retain in messages:
        client.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def result(seq):
    return {"schema": "edgeagent/result/1", "device_id": "cam-1", "seq": seq,
            "detections": [{"label": "face", "class_id": 0, "score": 0.9, "box": [1, 2, 3, 4]}]}


def test_monitor_counts_gaps_and_drops_duplicates_from_a_real_broker(tmp_path):
    # given a broker, and a device whose retained status is online
    with Broker(tmp_path, conf_extra="log_type subscribe").start() as broker:
        publish_all(broker.port, [("edgeagent/cam-1/status", {"state": "online",
                                   "pipeline": "face-detect", "backend": "tflite"}, True)])
        monitor = subprocess.Popen(
            [sys.executable, "-m", "agent", "monitor", "--host", "127.0.0.1", "--port",
             str(broker.port), "--duration", "8", "--json"], cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
        # (once its subscription is in the broker's log, however long its start took)
        deadline = time.monotonic() + 6
        while " edgeagent/" not in broker.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        # when results 1..3, a redelivered 3, then 6 (4 and 5 lost) and a health arrive
        publish_all(broker.port, [("edgeagent/cam-1/results", result(s), False)
                                  for s in (1, 2, 3, 3, 6)] +
                    [("edgeagent/cam-1/health", {"state": "running", "fps": {"processed": 14.5},
                                                 "outbox": {"pending": 0}}, False)])
        out, err = monitor.communicate(timeout=20)
    # then the monitor shows the device with 4 results, 1 duplicate and a gap of 2
    assert monitor.returncode == 0, err
    (row,) = json.loads(out)
    assert row["device"] == "cam-1" and row["state"] == "online" and row["backend"] == "tflite"
    assert (row["results"], row["duplicates"], row["gaps"], row["last_seq"]) == (4, 1, 2, 6)
    assert row["fps"] == 14.5 and row["last_labels"] == ["face"]


def test_monitor_without_a_broker_says_so_in_one_line(tmp_path):
    # given no broker on the port
    from broker import free_port
    port = free_port()
    # when the monitor starts
    proc = subprocess.run([sys.executable, "-m", "agent", "monitor", "--host", "127.0.0.1",
                           "--port", str(port), "--duration", "1"], cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    # then it exits non-zero with one clear line and no traceback
    assert proc.returncode != 0
    assert "cannot reach broker 127.0.0.1:%d" % port in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
