"""Durable results vs raw paho: QoS 1 publish-to-PUBACK throughput against a local mosquitto.

    .venv/bin/python benchmarks/bench_outbox.py [--n 20000] [--rounds 3]

raw:     one paho client (loop_start), N publishes, wait for every on_publish (RAM only).
durable: Publisher + MqttLink + Outbox (SQLite WAL, synchronous=FULL): submit N results,
         wait until the broker acknowledged all of them and the outbox is empty.
Both keep the same number of messages in flight. Prints msg/s of each round, the medians and
durable/raw (target >= 0.8). Starts its own mosquitto on a free port (needs /usr/sbin/mosquitto).
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from agent.mqtt import MqttLink, MqttSettings, Outbox, Publisher  # noqa: E402
from broker import Broker, paho_client  # noqa: E402

WINDOW = 1000
TOPIC = "edgeagent/bench/results"


def result_payload(seq: int) -> bytes:
    """About the size of a face-detection result with two boxes."""
    return json.dumps({
        "schema": "edgeagent/result/1", "device_id": "bench", "seq": seq,
        "ts": "2026-11-22T23:00:00.123Z", "frame": {"index": seq, "width": 1280, "height": 720},
        "pipeline": "face-detect", "model": "face_detection_short_range", "backend": "tflite",
        "timing_ms": {"preprocess": 1.2, "infer": 8.4, "postprocess": 0.3, "total": 10.9},
        "detections": [{"label": "face", "class_id": 0, "score": 0.93,
                        "box": [412.0, 96.5, 530.2, 241.7]}] * 2}).encode()


def raw_paho(port: int, n: int, inflight: int) -> float:
    client = paho_client("bench-raw", clean_session=True)
    client.max_inflight_messages_set(inflight)
    done, count = threading.Event(), [0]

    def on_publish(*_args):
        count[0] += 1
        if count[0] == n:
            done.set()

    client.on_publish = on_publish
    client.connect("127.0.0.1", port)
    client.loop_start()
    time.sleep(0.2)
    started = time.monotonic()
    for seq in range(1, n + 1):
        client.publish(TOPIC, result_payload(seq), qos=1)
    if not done.wait(120):
        raise RuntimeError("raw: only %d of %d acknowledged" % (count[0], n))
    took = time.monotonic() - started
    client.disconnect()
    client.loop_stop()
    return n / took


def durable(port: int, n: int, workdir: str) -> float:
    settings = MqttSettings.from_dict({"host": "127.0.0.1", "port": port}, "bench")
    outbox = Outbox(os.path.join(workdir, "outbox-%d.sqlite" % time.monotonic_ns()),
                    commit_interval_ms=200)
    publisher = Publisher(MqttLink(settings, "bench", lambda state: b"{}"), outbox, window=WINDOW)
    publisher.start()
    if not publisher._link.wait_connected(10):
        raise RuntimeError("durable: no connection: %s" % publisher._link.last_error)
    time.sleep(0.2)
    started = time.monotonic()
    for _ in range(n):
        publisher.submit(TOPIC, result_payload, 1)
    if not publisher.flush(120):
        raise RuntimeError("durable: %s still pending" % publisher.stats())
    took = time.monotonic() - started
    publisher.stop(5)
    return n / took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="bench-outbox-")
    broker = Broker(workdir).start()
    raws, windowed, durables = [], [], []
    try:
        for round_no in range(1, args.rounds + 1):     # interleaved: drift hits all alike
            raws.append(raw_paho(broker.port, args.n, 0))
            windowed.append(raw_paho(broker.port, args.n, WINDOW))
            durables.append(durable(broker.port, args.n, workdir))
            print("round %d: raw %8.0f msg/s   raw window=%d %8.0f msg/s   durable %8.0f msg/s" % (
                round_no, raws[-1], WINDOW, windowed[-1], durables[-1]))
    finally:
        broker.stop()
    raw, dur = statistics.median(raws), statistics.median(durables)
    print("median of %d rounds, N=%d: raw paho QoS1 %.0f msg/s (no in-flight limit; %.0f msg/s "
          "with paho's limit at %d), outbox+publisher %.0f msg/s (window %d)" % (
              args.rounds, args.n, raw, statistics.median(windowed), WINDOW, dur, WINDOW))
    print("durable/raw = %.2fx (target >= 0.80x)" % (dur / raw))


if __name__ == "__main__":
    main()
