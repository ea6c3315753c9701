"""`edgeagent monitor`: the per-device view (state, staleness, health columns) as values, and
the real command against a real Mosquitto: --json and --once (the live screen in tmux:
tests/test_monitor_screen.py)."""

import json
import signal
import subprocess
import time

import pytest

from agent.fleet.monitor import DeviceView
from agent.fleet.monitor_screen import format_table
from broker import Broker, free_port
from conftest import agent_command, agent_env, ROOT
from ending import end
from monitor_messages import NOW, TS_NOW, health, publish_all, result, ts  # noqa: F401


# ---- the view, as values ------------------------------------------------------------------

def view_with(status_state, health_age_s, retained=False):
    view = DeviceView("cam-1")
    view.on_message("status", {"state": status_state, "ts": ts(-100), "pipeline": "face-detect",
                               "backend": "tflite"}, True, NOW - 100)
    view.on_message("health", health(offset_s=-health_age_s), retained, NOW - health_age_s)
    return view


@pytest.mark.parametrize("status_state, health_age_s, retained, state, fps", [
    ("online", 2, False, "running", 14.5),      # fresh health: shown
    ("online", 45, False, "stale", None),       # silent past --stale-after: marked, health hidden
    ("online", 45, True, "stale", None),        # a retained old health is old, not new
    ("offline", 2, False, "offline", None),     # the last will: marked, health hidden
    ("stopped", 2, False, "stopped", None),
])
def test_offline_and_stale_devices_are_marked_and_show_no_old_health(
        status_state, health_age_s, retained, state, fps):
    # given a device's status and a health sample health_age_s old
    view = view_with(status_state, health_age_s, retained)
    # when its row is built with --stale-after 30, the monitor having run for a minute
    row = view.row(NOW, NOW - 60, 30.0)
    # then
    assert (row["state"], row["fps"], row["marked"]) == (state, fps, state not in ("running",))
    if fps is None:
        assert row["p95_ms"] == {} and row["temps_c"] == {} and row["outbox_pending"] is None
    assert row["last_seen_s"] == pytest.approx(health_age_s, abs=0.01)


def test_a_device_online_when_the_monitor_starts_is_not_stale_before_it_could_report():
    # given a retained online status from an hour ago and no health yet, the monitor just started
    view = DeviceView("cam-1")
    view.on_message("status", {"state": "online", "ts": ts(-3600)}, True, NOW)
    # then it is online, not stale, until --stale-after has passed since the monitor started
    assert view.row(NOW, NOW - 5, 30.0)["state"] == "online"
    assert view.row(NOW, NOW - 31, 30.0)["state"] == "stale"


def test_the_table_has_whole_headers_stage_p95_temperatures_and_outbox():
    view = view_with("online", 2)
    for seq in (1, 2, 2, 5):
        view.on_message("results", result(seq), False, NOW - 1)
    row = view.row(NOW, NOW - 60, 30.0)
    assert (row["results"], row["duplicates"], row["gaps"], row["infer_ms"]) == (3, 1, 2, 8.2)
    header, line = format_table([row]).splitlines()
    assert header.split("  ")[0] == "DEVICE"
    for title in ("STATE", "INFER ms", "P95 pre/inf/post ms", "TEMP °C", "OUTBOX pend/drop",
                  "LAST SEEN"):
        assert title in header
    for cell in ("running", "14.5", "8.2", "1.9/9.7/0.5", "cpu 51 gpu 48", "3/0", "1s ago"):
        assert cell in line, (cell, line)



@pytest.mark.parametrize("second_boot, gaps", [("d" * 32, 9995), ("e" * 32, 0)])
def test_a_seq_jump_is_a_gap_within_a_boot_and_no_loss_across_a_restart(second_boot, gaps):
    # given a device that sent seqs 1-4, then seq 10000 (after a crash the agent skips the rest
    # of its reserved seq block, under a new boot_id)
    view = view_with("online", 2)
    for seq in (1, 2, 3, 4):
        view.on_message("results", result(seq), False, NOW - 1)
    jump = dict(result(10000), boot_id=second_boot)
    view.on_message("results", jump, False, NOW - 1)
    # then the jump counts as lost results only when the boot_id did not change
    row = view.row(NOW, NOW - 60, 30.0)
    assert (row["results"], row["gaps"]) == (5, gaps)

# ---- the real command ---------------------------------------------------------------------

def monitor(port, *extra):
    return subprocess.Popen(agent_command(["monitor", "--host", "127.0.0.1", "--port", port] +
                                          list(extra)),
                            cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, universal_newlines=True)


def test_json_rows_count_gaps_and_drop_duplicates_from_a_real_broker(tmp_path):
    # given a broker, a device whose retained status is online, and the monitor writing JSON
    with Broker(tmp_path) as broker:
        publish_all(broker.port, [("edgeagent/cam-1/status", {"state": "online",
                                   "pipeline": "face-detect", "backend": "tflite"}, True)])
        proc = monitor(broker.port, "--json", "--interval", "0.2")
        try:
            first = json.loads(proc.stdout.readline())       # it is subscribed once it writes
            assert [r["device"] for r in first] in ([], ["cam-1"])
            # when results 1..3, a redelivered 3, then 6 (4 and 5 lost) and a health arrive
            publish_all(broker.port, [("edgeagent/cam-1/results", result(s), False)
                                      for s in (1, 2, 3, 3, 6)] +
                        [("edgeagent/cam-1/health", dict(health(), ts=time.strftime(
                            "%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())), False)])
            deadline = time.monotonic() + 20
            row = {}
            while time.monotonic() < deadline and (row.get("last_seq") != 6 or row.get("fps") is None):
                rows = json.loads(proc.stdout.readline())
                row = rows[0] if rows else {}
        finally:
            out, err = end(proc, signal.SIGINT, timeout_s=20)      # Ctrl-C
    # then the device shows 4 results, 1 duplicate and a gap of 2, its health, and exit is clean
    assert (row["results"], row["duplicates"], row["gaps"], row["last_seq"]) == (4, 1, 2, 6)
    assert row["state"] == "running" and row["backend"] == "tflite" and row["fps"] == 14.5
    assert row["last_labels"] == ["face"]
    assert proc.returncode == 0 and "Traceback" not in err, err


def test_once_prints_one_table_of_the_retained_state_and_exits(tmp_path):
    with Broker(tmp_path) as broker:
        publish_all(broker.port, [("edgeagent/cam-7/status", {"state": "offline", "ts": TS_NOW,
                                   "pipeline": "face-detect", "backend": "onnxruntime"}, True)])
        run = subprocess.run(agent_command(["monitor", "--host", "127.0.0.1", "--port",
                                            broker.port, "--once", "--wait", "1"]),
                             cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("edgeagent monitor ") and "1 device, 1 offline or stale" in lines[0]
    assert lines[2].split()[0] == "DEVICE" and lines[3].split()[:2] == ["cam-7", "OFFLINE"]


@pytest.mark.parametrize("flag, value", [("--interval", "0"), ("--stale-after", "-5"),
                                         ("--wait", "-1"), ("--duration", "-2")])
def test_intervals_that_cannot_work_get_one_line(flag, value):
    # given no broker at all: the arguments are checked before connecting
    done = subprocess.run(agent_command(["monitor", "--port", free_port(), flag, value]),
                          cwd=ROOT, env=agent_env(), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True, timeout=30)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("edgeagent monitor: config error: --interval and --stale-after must "
                           "be above 0 seconds"), line


def test_monitor_without_a_broker_says_so_in_one_line():
    # given no broker on the port
    port = free_port()
    # when the monitor starts
    proc = subprocess.run(agent_command(["monitor", "--host", "127.0.0.1", "--port", port,
                                         "--once"]), cwd=ROOT, env=agent_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    # then it exits non-zero with one clear line and no traceback
    assert proc.returncode == 6
    assert "cannot reach broker 127.0.0.1:%d" % port in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
