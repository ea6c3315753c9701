"""Durable results vs raw paho: QoS 1 publish-to-PUBACK throughput against a local mosquitto.

    .venv/bin/python benchmarks/bench_outbox.py [--n 20000] [--rounds 3]

raw:     one paho client (loop_start), N publishes, wait for every on_publish (RAM only).
durable: Publisher + MqttLink + Outbox (journal before submit returns, then SQLite WAL with
         synchronous=FULL every 200 ms): submit N results, wait until the broker acknowledged
         all of them and the outbox is empty.
Both keep the same number of messages in flight. Prints msg/s of each round, the medians and
durable/raw (target >= 0.8), and the CPU-time ratio (steadier on a busy machine). Starts its own mosquitto on a free port (needs /usr/sbin/mosquitto).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

from agent.mqtt.link import MqttLink  # noqa: E402
from agent.mqtt.outbox import Outbox  # noqa: E402
from agent.mqtt.publisher import Publisher  # noqa: E402
from agent.mqtt.settings import MqttSettings  # noqa: E402
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


def cpu_s() -> float:
    """CPU seconds of this process, all threads: less sensitive to other load than wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def raw_paho(port: int, n: int, inflight: int):
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
    started, cpu = time.monotonic(), cpu_s()
    for seq in range(1, n + 1):
        client.publish(TOPIC, result_payload(seq), qos=1)
    if not done.wait(120):
        raise RuntimeError("raw: only %d of %d acknowledged" % (count[0], n))
    took, cpu = time.monotonic() - started, cpu_s() - cpu
    client.disconnect()
    client.loop_stop()
    return n / took, cpu


def durable(port: int, n: int, workdir: str):
    settings = MqttSettings.from_dict({"host": "127.0.0.1", "port": port}, "bench")
    outbox = Outbox(os.path.join(workdir, "outbox-%d.sqlite" % time.monotonic_ns()),
                    commit_interval_ms=200)
    publisher = Publisher(MqttLink(settings, "bench", lambda state: b"{}"), outbox, window=WINDOW)
    publisher.start()
    if not publisher._link.wait_connected(10):
        raise RuntimeError("durable: no connection: %s" % publisher._link.last_error)
    time.sleep(0.2)
    started, cpu = time.monotonic(), cpu_s()
    for _ in range(n):
        publisher.submit(TOPIC, result_payload, 1)
    if not publisher.flush(120):
        raise RuntimeError("durable: %s still pending" % publisher.stats())
    took, cpu = time.monotonic() - started, cpu_s() - cpu
    publisher.stop(5)
    return n / took, cpu


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
            print("round %d: raw %6.0f msg/s (%.2f cpu-s)   raw window=%d %6.0f msg/s   "
                  "durable %6.0f msg/s (%.2f cpu-s)" % (
                      round_no, raws[-1][0], raws[-1][1], WINDOW, windowed[-1][0],
                      durables[-1][0], durables[-1][1]))
    finally:
        broker.stop()
    raw, dur = (statistics.median(r for r, _ in runs) for runs in (raws, durables))
    raw_cpu, dur_cpu = (statistics.median(c for _, c in runs) for runs in (raws, durables))
    print("median of %d rounds, N=%d: raw paho QoS1 %.0f msg/s (no in-flight limit; %.0f msg/s "
          "with paho's limit at %d), outbox+publisher %.0f msg/s (window %d)" % (
              args.rounds, args.n, raw, statistics.median(r for r, _ in windowed), WINDOW, dur,
              WINDOW))
    paired = sorted(d[0] / r[0] for r, d in zip(raws, durables))
    print("durable/raw throughput = %.2fx median of per-round pairs (%s; target >= 0.80x); "
          "ratio of medians %.2fx; CPU per message raw/durable = %.2fx" % (
              paired[len(paired) // 2], ", ".join("%.2f" % x for x in paired), dur / raw,
              raw_cpu / dur_cpu))

if __name__ == "__main__":
    main()
