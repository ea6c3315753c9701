"""What devices send, for the monitor tests: health and result payloads at a fixed "now", and
a publisher that puts them on a real broker."""

import json
import time
import uuid

from broker import paho_client

NOW = 1796000000.0          # a fixed "now" for the value tests (epoch seconds)
TS_NOW = "2026-12-01T08:53:20.000Z"   # NOW as the contract writes it


def ts(offset_s):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(NOW + offset_s)) + ".000Z"


def health(state="running", offset_s=0.0):
    return {"schema": "edgeagent/health/1", "device_id": "cam-1", "ts": ts(offset_s),
            "state": state, "fps": {"captured": 15.0, "processed": 14.5, "dropped": 0.5},
            "latency_ms": {"preprocess": {"p50": 1.1, "p95": 1.9}, "infer": {"p50": 8.2, "p95": 9.7},
                           "postprocess": {"p50": 0.3, "p95": 0.5}},
            "camera": {"state": "running", "reconnects": 0, "stalls": 0},
            "outbox": {"pending": 3, "dropped": 0, "bytes": 900},
            "system": {"mem_used_mb": 100, "mem_total_mb": 1000, "temps_c": {"cpu": 51.4, "gpu": 48.0}}}


def result(seq, device="cam-1"):
    return {"schema": "edgeagent/result/1", "device_id": device, "boot_id": "d" * 32, "seq": seq,
            "timing_ms": {"preprocess": 1.0, "infer": 8.0, "postprocess": 0.2, "total": 9.2},
            "detections": [{"label": "face", "class_id": 0, "score": 0.9, "box": [1, 2, 3, 4]}]}


def publish_all(port, messages):
    client = paho_client("test-device-sim-" + uuid.uuid4().hex[:6], clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    for topic, payload, retain in messages:
        client.publish(topic, json.dumps(payload), qos=1, retain=retain).wait_for_publish(5)
    client.loop_stop()
    client.disconnect()
