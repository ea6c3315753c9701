"""What the ingest tests (tests/test_ingest.py) share: the test PostgreSQL (a fresh schema per
test, dropped after), payloads as docs/mqtt.md has them, a QoS 1 device simulator and a real
`edgeagent ingest run` child process."""

import json
import os
import signal
import subprocess
import time
import uuid

import psycopg
import pytest

from broker import paho_client
from conftest import agent_command, agent_env, ROOT

DSN = os.environ.get("EDGEAGENT_TEST_DSN", "host=127.0.0.1 port=5432 dbname=test user=postgres")


@pytest.fixture
def schema():
    name = "ingest_test_" + uuid.uuid4().hex[:12]
    yield name
    with psycopg.connect(DSN, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS %s CASCADE" % name)


def query(sql, *params):
    with psycopg.connect(DSN) as conn:
        return conn.execute(sql, params).fetchall()


def boot_id():
    return uuid.uuid4().hex


def result(device, boot, seq, labels=("face",)):
    return {"schema": "edgeagent/result/1", "device_id": device, "boot_id": boot, "seq": seq,
            "ts": "2026-11-22T23:%02d:%02d.%03dZ" % (seq // 60000 % 60, seq // 1000 % 60, seq % 1000),
            "frame": {"index": seq - 1, "width": 640, "height": 480},
            "pipeline": "face-detect", "model": "face_detection_short_range", "backend": "tflite",
            "timing_ms": {"preprocess": 1.2, "infer": 8.4, "postprocess": 0.3, "total": 10.9},
            "detections": [{"label": l, "class_id": 0, "score": 0.9, "box": [1, 2, 3, 4]}
                           for l in labels]}


def health(device, boot, n):
    return {"schema": "edgeagent/health/1", "device_id": device, "boot_id": boot,
            "ts": "2026-11-22T23:00:%02d.000Z" % n, "uptime_s": float(n), "state": "running",
            "fps": {"captured": 15.0, "processed": 14.5, "dropped": 0.5}, "latency_ms": {},
            "camera": {"state": "running", "reconnects": 0, "stalls": 0},
            "outbox": {"pending": n, "dropped": 0, "bytes": 0},
            "system": {"mem_used_mb": 100, "mem_total_mb": 1000},
            "backend": {"name": "tflite", "precision": "fp32", "device": "cpu"}}


class Publisher:
    """A device simulator: QoS 1 publishes, each waited for until the broker's PUBACK."""

    def __init__(self, port):
        self.client = paho_client("test-ingest-publisher-" + uuid.uuid4().hex[:6], clean_session=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def send(self, messages):
        infos = [self.client.publish(topic, json.dumps(payload), qos=1) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(30)
            assert info.is_published()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


class IngestProcess:
    """One `edgeagent ingest run` child; its log goes to a file we poll."""

    def __init__(self, tmp_path, port, schema, name, extra=()):
        self.log_path = str(tmp_path / ("%s.log" % name))
        self.out_path = str(tmp_path / ("%s.out" % name))
        args = ["ingest", "run", "--dsn", DSN, "--schema", schema, "--host", "127.0.0.1",
                "--port", port, "--client-id", name, "--group", "test", "--report-every", "0.5"]
        with open(self.log_path, "wb") as log, open(self.out_path, "wb") as out:
            self.proc = subprocess.Popen(agent_command(args + list(extra)), stdout=out, stderr=log,
                                         cwd=ROOT, env=agent_env())

    def log(self):
        with open(self.log_path) as handle:
            return handle.read()

    def wait_log(self, text, timeout_s=30, count=1):
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.log().count(text) >= count:
                return True
            assert self.proc.poll() is None, self.log()
            time.sleep(0.05)
        return False

    def stop(self):
        """SIGTERM; returns the summary JSON it prints on stdout."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)
        assert self.proc.returncode == 0, self.log()
        with open(self.out_path) as handle:
            return json.loads(handle.read().strip().splitlines()[-1])

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def wait_rows(schema, table, expected, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    n = -1
    while time.monotonic() < deadline:
        (n,), = query("SELECT count(*) FROM %s.%s" % (schema, table))
        if n >= expected:
            return n
        time.sleep(0.2)
    return n
