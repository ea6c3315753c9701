"""`edgeagent ingest` against real services: Mosquitto 2 (tests/broker.py, persistence on) and
the PostgreSQL on 127.0.0.1:5432 (database `test`, one fresh schema per test, dropped after).

Consumers are real `edgeagent ingest run` processes sharing one MQTT 5 group. Payloads follow
the contract of docs/mqtt.md: (device_id, boot_id, seq) identifies a message. The pure parts
(rows, the DSN shown in messages): tests/test_ingest_rows.py."""

import json
import random
import signal
import subprocess

import pytest

from broker import add_password, Broker, free_port
from conftest import agent_command, agent_env, ROOT
from ending import end
from ingest_helpers import (DSN, IngestProcess, Publisher, boot_id, health, query, result,  # noqa: F401
                            schema, wait_rows)   # schema: a fixture


# ---- the real thing -----------------------------------------------------------------------

def test_three_consumers_through_a_broker_restart_store_each_message_exactly_once(tmp_path, schema):
    # given a persistent broker and three consumers of one shared-subscription group
    broker = Broker(tmp_path / "broker").start()
    consumers = [IngestProcess(tmp_path, broker.port, schema, "ingest-%d" % i) for i in (1, 2, 3)]
    publisher = None
    try:
        for c in consumers:
            assert c.wait_log("subscribed to $share/test/edgeagent/+/results"), c.log()
        devices = {"cam-%d" % d: boot_id() for d in (1, 2, 3)}
        n = 600
        sent = [("edgeagent/%s/results" % dev, result(dev, boot, seq))
                for seq in range(1, n + 1) for dev, boot in devices.items()]
        beats = [("edgeagent/%s/health" % dev, health(dev, boot, k))
                 for k in range(5) for dev, boot in devices.items()]
        rng = random.Random(13)
        resent = rng.sample(sent[:len(sent) // 2], 200) + beats[:1]   # a device's outbox resending
        publisher = Publisher(broker.port)
        # when the first half arrives (with 201 copies sent twice) ...
        publisher.send(sent[:len(sent) // 2] + beats + resent)
        # ... the consumers freeze with messages delivered but not acknowledged, more are
        # published, and the broker restarts (SIGTERM: it saves its state) under them
        for c in consumers:
            c.proc.send_signal(signal.SIGSTOP)
        publisher.send(sent[len(sent) // 2: 3 * len(sent) // 4])
        publisher.close()
        broker.restart()
        for c in consumers:
            c.proc.send_signal(signal.SIGCONT)
        # (Mosquitto 2.0 does not restore shared subscriptions from its persistence file: until
        # a member re-subscribes, new messages for the group are dropped; docs/ingest.md)
        for c in consumers:
            assert c.wait_log("subscribed to $share/test/edgeagent/+/results", count=2), c.log()
        publisher = Publisher(broker.port)
        publisher.send(sent[3 * len(sent) // 4:])
        # then every result and health sample is stored exactly once
        assert wait_rows(schema, "results", len(sent)) == len(sent)
        assert wait_rows(schema, "health", len(beats)) == len(beats)
        for c in consumers:   # each came back to its kept session after the restart
            assert c.wait_log("(session present: True)"), c.log()
        summaries = [c.stop() for c in consumers]
    finally:
        if publisher is not None:
            publisher.close()
        for c in consumers:
            c.kill()
        broker.stop()
    rows = query("SELECT device_id, boot_id, seq FROM %s.results" % schema)
    assert len(rows) == len(set(rows)) == len(sent)                       # 0 duplicate rows
    assert set(rows) == {(dev, boot, seq) for seq in range(1, n + 1)
                         for dev, boot in devices.items()}              # 0 missing
    assert query("SELECT count(*) FROM %s.health" % schema) == [(len(beats),)]
    # and the copies did reach the consumers, which ignored them; the load was shared
    total = {k: sum(s["total"][k] for s in summaries) for k in ("received", "inserted", "duplicates")}
    assert total["inserted"] == len(sent) + len(beats)
    assert total["duplicates"] >= len(resent)
    assert total["received"] == total["inserted"] + total["duplicates"]
    assert all(s["total"]["inserted"] > 0 for s in summaries), summaries
    # and the gaps report agrees: nothing missing
    report = subprocess.run(agent_command(["ingest", "gaps", "--dsn", DSN, "--schema", schema,
                                           "--json"]), cwd=ROOT, env=agent_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    assert report.returncode == 0, report.stderr
    assert [(r["device_id"], r["rows"], r["missing"]) for r in json.loads(report.stdout)] == [
        (dev, n, 0) for dev in sorted(devices)]


def test_gaps_are_listed_and_counted(tmp_path, schema):
    # given one process with two consumers, and a device whose outbox dropped seqs 4-5 and 9
    # (plus a redelivery)
    with Broker(tmp_path / "broker") as broker:
        consumer = IngestProcess(tmp_path, broker.port, schema, "ingest-gaps", ["--consumers", "2"])
        try:
            assert consumer.wait_log("subscribed to", count=2), consumer.log()
            boot = boot_id()
            publisher = Publisher(broker.port)
            publisher.send([("edgeagent/cam-9/results", result("cam-9", boot, s))
                            for s in (1, 2, 3, 3, 6, 7, 8, 10)])
            publisher.close()
            assert wait_rows(schema, "results", 7) == 7
            summary = consumer.stop()
        finally:
            consumer.kill()
    assert [c["client_id"] for c in summary["consumers"]] == ["ingest-gaps-1", "ingest-gaps-2"]
    assert summary["total"]["duplicates"] == 1 and summary["total"]["inserted"] == 7
    # when the gaps are asked for
    run = subprocess.run(agent_command(["ingest", "gaps", "--dsn", DSN, "--schema", schema]),
                         cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    # then the table shows 7 rows, 3 missing, in two ranges
    assert run.returncode == 0, run.stderr
    header, line = run.stdout.strip().splitlines()
    assert header.split() == ["device", "rows", "first_seq", "last_seq", "missing", "gaps"]
    assert line.split() == ["cam-9", "7", "1", "10", "3", "4-5,", "9"]


def test_a_seq_jump_across_a_restart_is_no_gap(tmp_path, schema):
    # given a device that sent 1-3, crashed, and came back under a new boot_id at seq 10004
    # (the agent skips the rest of the seq block it had reserved), then lost 10006
    with Broker(tmp_path / "broker") as broker:
        consumer = IngestProcess(tmp_path, broker.port, schema, "ingest-boots", [])
        try:
            assert consumer.wait_log("subscribed to"), consumer.log()
            first, second = boot_id(), boot_id()
            publisher = Publisher(broker.port)
            publisher.send([("edgeagent/cam-8/results", result("cam-8", first, s))
                            for s in (1, 2, 3)] +
                           [("edgeagent/cam-8/results", result("cam-8", second, s))
                            for s in (10004, 10005, 10007)])
            publisher.close()
            assert wait_rows(schema, "results", 6) == 6
            consumer.stop()
        finally:
            consumer.kill()
    # when the gaps are asked for
    run = subprocess.run(agent_command(["ingest", "gaps", "--dsn", DSN, "--schema", schema]),
                         cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    # then only the hole inside the second boot is missing
    assert run.returncode == 0, run.stderr
    line = run.stdout.strip().splitlines()[1]
    assert line.split() == ["cam-8", "6", "1", "10007", "1", "10006"]


def test_a_lost_database_connection_is_retried_and_nothing_is_lost(tmp_path, schema):
    # given one consumer that has stored 100 results
    with Broker(tmp_path / "broker") as broker:
        consumer = IngestProcess(tmp_path, broker.port, schema, "ingest-db-" + schema[-6:])
        try:
            assert consumer.wait_log("subscribed to"), consumer.log()
            boot = boot_id()
            publisher = Publisher(broker.port)
            publisher.send([("edgeagent/cam-5/results", result("cam-5", boot, s)) for s in range(1, 101)])
            assert wait_rows(schema, "results", 100) == 100
            # when PostgreSQL drops its connection, and 100 more results arrive
            killed = query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE application_name = %s", "ingest-db-" + schema[-6:])
            assert killed == [(True,)]
            publisher.send([("edgeagent/cam-5/results", result("cam-5", boot, s)) for s in range(101, 201)])
            publisher.close()
            # then it reconnects and stores them all, once
            assert wait_rows(schema, "results", 200) == 200
            assert consumer.wait_log("retrying in"), consumer.log()
            summary = consumer.stop()
        finally:
            consumer.kill()
    assert summary["total"]["inserted"] == 200
    assert query("SELECT count(DISTINCT seq), min(seq), max(seq) FROM %s.results" % schema) == [(200, 1, 200)]


def test_gaps_on_a_schema_never_ingested_says_so_in_one_line(schema):
    # given a DSN with a password (the test server trusts 127.0.0.1 and ignores it)
    dsn = DSN + " password=s3cret"
    run = subprocess.run(agent_command(["ingest", "gaps", "--dsn", dsn, "--schema", schema]),
                         cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True)
    assert run.returncode == 6
    # then one line, and the password is not in it
    assert run.stderr.strip() == ("edgeagent ingest: output error: no table %s.results in %s "
                                  "password=***: run `edgeagent ingest run` first, or pass --schema"
                                  % (schema, DSN))
    assert "s3cret" not in run.stderr


@pytest.mark.parametrize("flags, says", [
    (["--consumers", "0"], "--consumers, --batch and --receive-maximum must be at least 1"),
    (["--report-every", "0"], "--report-every must be above 0 seconds"),
    (["--session-expiry", "-1"], "--session-expiry 0 or more"),
])
def test_bad_ingest_arguments_get_one_line(flags, says):
    run = subprocess.run(agent_command(["ingest", "run", "--dsn", DSN, "--port", free_port()] +
                                       flags), cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert run.returncode == 2
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith("edgeagent ingest: config error: ") and says in line, line
    assert run.stdout == ""


def test_ingest_without_a_broker_says_so_in_one_line(tmp_path, schema):
    port = free_port()
    run = subprocess.run(agent_command(["ingest", "run", "--dsn", DSN, "--schema", schema,
                                        "--host", "127.0.0.1", "--port", port]),
                         cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert run.returncode == 6
    lines = [l for l in run.stderr.strip().splitlines() if "edgeagent ingest:" in l]
    assert lines == ["edgeagent ingest: output error: cannot reach broker 127.0.0.1:%d "
                     "([Errno 111] Connection refused)" % port], run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""          # no summary of a run that never started


def test_the_real_agents_results_and_health_are_stored_once_each(tmp_path, schema, sample_video):
    # given a broker, one consumer, and the real agent on the 60-frame sample video with
    # health every 0.5 s (today's agent may not send boot_id yet: stored as '')
    with Broker(tmp_path / "broker") as broker:
        consumer = IngestProcess(tmp_path, broker.port, schema, "ingest-real")
        try:
            assert consumer.wait_log("subscribed to"), consumer.log()
            config = tmp_path / "config.yaml"
            config.write_text("\n".join([
                "device: {id: real-cam}", "pipeline: face-detect", "backend: onnxruntime",
                "state_dir: %s" % (tmp_path / "state"), "camera: {loop: true}",
                "mqtt: {host: 127.0.0.1, port: %d, keepalive_s: 5}" % broker.port,
                "health: {interval_s: 0.5}", "log: {level: info}"]) + "\n")
            # when it runs (printing what it stored in its outbox) until health is stored too
            agent = subprocess.Popen(agent_command(["run", "--config", config, "--source",
                                                    "file://" + sample_video, "--print"]),
                                     cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, universal_newlines=True)
            try:
                assert wait_rows(schema, "health", 2, timeout_s=120) >= 2
            finally:
                out, err = end(agent, signal.SIGTERM)
            assert agent.returncode == 0, err
            printed = [json.loads(line) for line in out.splitlines()]
            assert printed
            # then every result it sent is one row, keyed as the contract says
            assert wait_rows(schema, "results", len(printed)) == len(printed)
            summary = consumer.stop()
        finally:
            consumer.kill()
    rows = query("SELECT device_id, boot_id, seq, payload FROM %s.results ORDER BY seq" % schema)
    assert [(d, s) for d, _, s, _ in rows] == [("real-cam", p["seq"]) for p in printed]
    assert {b for _, b, _, _ in rows} == {printed[0].get("boot_id", "")}
    assert [p for _, _, _, p in rows] == printed
    assert summary["total"]["rejected"] == 0
    # and its health samples, one row each
    health_rows = query("SELECT device_id, boot_id, state FROM %s.health" % schema)
    assert len(health_rows) >= 2 and {d for d, _, _ in health_rows} == {"real-cam"}


def test_ingest_without_its_database_says_so_in_one_line(tmp_path):
    with Broker(tmp_path / "broker") as broker:
        run = subprocess.run(agent_command(["ingest", "run", "--dsn",
                                            "host=127.0.0.1 port=1 dbname=test user=postgres",
                                            "--host", "127.0.0.1", "--port", broker.port]),
                             cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    assert run.returncode == 6
    lines = [l for l in run.stderr.strip().splitlines() if "edgeagent ingest:" in l]
    assert len(lines) == 1 and lines[0].startswith(
        "edgeagent ingest: output error: cannot connect to PostgreSQL "
        "(host=127.0.0.1 port=1 dbname=test user=postgres): "), run.stderr
    assert "Traceback" not in run.stderr
    assert run.stdout == ""


def test_a_broker_refusing_the_consumer_ends_it_with_one_line(tmp_path, schema):
    # given a broker that wants a password, and a consumer that has none
    passwd = str(tmp_path / "passwd")
    add_password(passwd, "someone", "secret")
    port = free_port()
    listener = "listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s" % (port, passwd)
    with Broker(tmp_path / "broker", port=port, listener_conf=listener) as broker:
        run = subprocess.run(agent_command(["ingest", "run", "--dsn", DSN, "--schema", schema,
                                            "--host", "127.0.0.1", "--port", broker.port,
                                            "--report-every", "0.2"]),
                             cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=60)
    # then it stops with exit 6 and the broker's reason
    assert run.returncode == 6, run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last == ("edgeagent ingest: output error: broker 127.0.0.1:%d refused the connection: "
                    "Not authorized" % port), run.stderr
    assert "Traceback" not in run.stderr
