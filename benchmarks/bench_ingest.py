"""`edgeagent ingest` throughput: rows/s into PostgreSQL with 1, 2 and 4 consumers sharing one
MQTT 5 group, against a local Mosquitto (started here) and PostgreSQL.

    .venv/bin/python benchmarks/bench_ingest.py [--n 6000] [--rounds 2] [--dsn DSN]

Each round: N `edgeagent ingest run` processes subscribe, are frozen (SIGSTOP), N messages
(3 devices, results about 450 bytes) are published at QoS 1 and queued by the broker, then the
consumers are resumed and the clock runs until every row is committed. So it measures ingest
alone, not the publisher. Rounds of 1, 2, 4 consumers are interleaved; prints rows/s of each,
the medians, the ratio to 1 consumer, and how the broker split the messages. Each round uses
a fresh PostgreSQL schema, dropped after. Needs /usr/sbin/mosquitto and psycopg."""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]

import psycopg  # noqa: E402

from broker import Broker, paho_client  # noqa: E402

CONSUMERS = (1, 2, 4)


def payload(device, boot, seq):
    return json.dumps({
        "schema": "edgeagent/result/1", "device_id": device, "boot_id": boot, "seq": seq,
        "ts": "2026-11-22T23:00:00.123Z", "frame": {"index": seq, "width": 1280, "height": 720},
        "pipeline": "face-detect", "model": "face_detection_short_range", "backend": "tflite",
        "timing_ms": {"preprocess": 1.2, "infer": 8.4, "postprocess": 0.3, "total": 10.9},
        "detections": [{"label": "face", "class_id": 0, "score": 0.93,
                        "box": [412.0, 96.5, 530.2, 241.7]}] * 2})


def publish(port, n):
    client = paho_client("bench-ingest-pub", clean_session=True)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    boots = {"cam-%d" % d: uuid.uuid4().hex for d in (1, 2, 3)}
    infos = [client.publish("edgeagent/%s/results" % dev, payload(dev, boot, seq), qos=1)
             for seq in range(1, n // 3 + 1) for dev, boot in boots.items()]
    for info in infos:
        info.wait_for_publish(60)
    client.disconnect()
    client.loop_stop()
    return len(infos)


def count(dsn, schema):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT count(*) FROM %s.results" % schema).fetchone()[0]


def one_round(workdir, broker, dsn, consumers, n):
    schema = "bench_ingest_" + uuid.uuid4().hex[:10]
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = []
    try:
        for i in range(consumers):
            log = open(os.path.join(workdir, "%s-%d.log" % (schema, i)), "w+")
            proc = subprocess.Popen(
                [sys.executable, "-m", "agent", "ingest", "run", "--dsn", dsn, "--schema", schema,
                 "--host", "127.0.0.1", "--port", str(broker.port), "--group", schema,
                 "--client-id", "%s-%d" % (schema, i), "--report-every", "60"],
                stdout=subprocess.PIPE, stderr=log, universal_newlines=True, cwd=ROOT, env=env)
            procs.append((proc, log))
        for proc, log in procs:
            wait_for(lambda: "subscribed to" in _read(log), 60, "consumer subscribed")
            proc.send_signal(signal.SIGSTOP)
        sent = publish(broker.port, n)
        started = time.monotonic()
        for proc, _ in procs:
            proc.send_signal(signal.SIGCONT)
        wait_for(lambda: count(dsn, schema) >= sent, 300, "all rows")
        elapsed = time.monotonic() - started
        split = []
        for proc, _ in procs:
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
            split.append(json.loads(out.strip().splitlines()[-1])["total"]["received"])
        return sent / elapsed, split
    finally:
        for proc, log in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
                proc.wait()
            log.close()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS %s CASCADE" % schema)


def _read(log):
    log.seek(0)
    return log.read()


def wait_for(probe, timeout_s, what):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        time.sleep(0.02)
    raise SystemExit("bench_ingest: timed out waiting for " + what)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=6000, help="messages per round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--dsn", default=os.environ.get(
        "EDGEAGENT_INGEST_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres"))
    args = parser.parse_args()
    rates = {c: [] for c in CONSUMERS}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as workdir:
        broker = Broker(os.path.join(workdir, "broker")).start()
        try:
            for r in range(args.rounds):
                for consumers in CONSUMERS:
                    rate, split = one_round(workdir, broker, args.dsn, consumers, args.n)
                    rates[consumers].append(rate)
                    print("round %d: %d consumer(s): %8.0f rows/s   split %s" % (
                        r + 1, consumers, rate, "/".join(str(s) for s in split)), flush=True)
        finally:
            broker.stop()
    base = statistics.median(rates[1])
    for consumers in CONSUMERS:
        med = statistics.median(rates[consumers])
        print("median %d consumer(s): %8.0f rows/s   x%.2f vs 1" % (consumers, med, med / base))
    print("cpus: %d" % os.cpu_count())


if __name__ == "__main__":
    main()
