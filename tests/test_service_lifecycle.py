"""The agent as systemd runs it: a real process, a real NOTIFY_SOCKET, a real broker, a real
ffmpeg camera. READY=1 after the first result, WATCHDOG=1 only while frames flow, STOPPING=1 and
exit 0 on SIGTERM/SIGINT with nothing lost, exit 70 with one traceback when a thread dies, and
log lines fit for journald. Faults are injected by tests/faulty_agent.py (test-only patches)."""

import json
import logging
import os
import signal
import subprocess
import sys
import time

import pytest

from agent_proc import AgentProcess, NotifySocket, mqtt_section, wait_until, write_config
from broker import Subscriber, dedupe
from conftest import ROOT, agent_command, agent_env, run_agent
from streams import FfmpegStream

FAULTY = [sys.executable, os.path.join(ROOT, "tests", "faulty_agent.py")]
WATCHDOG_S = 1.0            # WatchdogSec= the tests pretend systemd has: keep-alives every 0.5 s


def stream_uri(camera: FfmpegStream) -> str:
    return camera.url + "?open_timeout_ms=2000&read_timeout_ms=4000"


def agent_config(tmp_path, source: str, **sections) -> str:
    sections.setdefault("mqtt", {"enabled": False})
    return write_config(str(tmp_path / "config.yaml"), device={"id": "dev1"},
                        pipeline="face-detect", source=source,
                        state_dir=str(tmp_path / "state"), **sections)


# ---- sd_notify and the watchdog ------------------------------------------------------------

def test_ready_after_first_result_watchdog_only_while_frames_flow_stopping_on_sigterm(
        tmp_path, sample_video):
    fault_file = str(tmp_path / "fault")
    with FfmpegStream(input_path=sample_video) as camera, NotifySocket() as notify:
        config = agent_config(tmp_path, stream_uri(camera))
        with AgentProcess(config, notify=notify, watchdog_usec=int(WATCHDOG_S * 1e6),
                          entry=FAULTY, env={"EDGEAGENT_TEST_FAULT_FILE": fault_file}) as agent:
            # given a running agent: READY=1 comes once the backend is loaded and a frame is through
            ready = notify.wait_for("READY", timeout_s=30)
            assert ready is not None, agent.log_text()
            loaded = agent.wait_log(r"running face-detect on \w+ from http", 1)
            first_result = agent.wait_result(5)
            assert loaded is not None and first_result is not None
            assert loaded < ready and abs(ready - first_result) < 3.0
            assert any(s.startswith("loading backend") for s in notify.values("STATUS"))
            # when frames flow, keep-alives come, at most every WatchdogSec/2
            assert wait_until(lambda: len(notify.times("WATCHDOG")) >= 3, 30), agent.log_text()
            pings = notify.times("WATCHDOG")
            flowing = len(pings)
            assert all(b - a >= WATCHDOG_S / 2 - 0.05 for a, b in zip(pings, pings[1:])), pings
            # when inference hangs, they stop within WatchdogSec
            with open(fault_file, "w") as handle:
                handle.write("hang")
            hung = time.monotonic()
            time.sleep(3.5)
            late = [t - hung for t in notify.times("WATCHDOG") if t > hung]
            assert all(t <= WATCHDOG_S + 1.5 for t in late), late
            assert agent.log_times(r"watchdog: no progress \((inference stage|no frame processed)")
            # and they come back once inference does
            os.remove(fault_file)
            released = time.monotonic()
            assert notify.wait_for("WATCHDOG", after=released, timeout_s=15.0) is not None
            # then SIGTERM: STOPPING=1 and a clean exit
            code, took = agent.stop(signal.SIGTERM)
    assert code == 0, agent.log_text()[-3000:]
    assert took < 10
    assert notify.times("STOPPING")
    print("READY %.1f s after start; %d keep-alives; last keep-alive %.2f s after the "
          "hang; stop took %.2f s" % (ready - agent.started, flowing, max(late or [0.0]), took))


# ---- stopping under load: nothing lost -------------------------------------------------------

@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_stop_signal_under_load_exits_0_publishes_stopped_and_loses_no_result(
        tmp_path, broker, sample_video, signum):
    subscriber = Subscriber(broker.port, "edgeagent/dev1/#", client_id="lifecycle-sub")
    config = agent_config(tmp_path, "file://" + sample_video, camera={"loop": True},
                          mqtt=mqtt_section(broker.port))
    with AgentProcess(config) as agent:
        # given an agent processing a looping video as fast as it can
        assert agent.wait_result(30, where=lambda p: p["seq"] >= 400), agent.log_text()
        # when it is told to stop
        code, took = agent.stop(signum)
    # then it exits 0 within 10 s, says `stopped`, and every stored result reached the broker
    assert code == 0, agent.log_text()[-3000:]
    assert took < 10
    printed = agent.seqs()
    assert printed == list(range(1, len(printed) + 1))
    assert subscriber.wait_for(lambda msgs: dedupe(seqs_of(msgs)) == printed, timeout_s=5), \
        "broker has %d results, the agent stored %d" % (len(dedupe(subscriber.seqs())),
                                                        len(printed))
    states = [m.json()["state"] for m in subscriber.received("/status")]
    assert states[-1] == "stopped"
    subscriber.close()
    print("%s: %d results, exit after %.2f s" % (signal.Signals(signum).name, len(printed), took))


def seqs_of(messages):
    return [m.json()["seq"] for m in messages if m.topic.endswith("/results")]


# ---- crashes: loud, once, exit 70 ------------------------------------------------------------

@pytest.mark.parametrize("fault, thread", [("raise", "inference"),
                                           ("camera-raise", "source-recovery")])
def test_a_crashing_thread_is_logged_once_with_its_traceback_and_exits_70(
        tmp_path, sample_video, fault, thread):
    fault_file = str(tmp_path / "fault")
    with FfmpegStream(input_path=sample_video) as camera, NotifySocket() as notify:
        config = agent_config(tmp_path, stream_uri(camera))
        with AgentProcess(config, notify=notify, entry=FAULTY,
                          env={"EDGEAGENT_TEST_FAULT_FILE": fault_file}) as agent:
            # given a running agent
            assert notify.wait_for("READY", timeout_s=30) is not None, agent.log_text()
            # when one of its threads dies of an exception
            with open(fault_file, "w") as handle:
                handle.write(fault)
            # then the process ends with 70 (systemd restarts it), the traceback logged once
            assert wait_until(lambda: not agent.running, 15), agent.log_text()
            code = agent.proc.wait()
            for reader in agent._readers:
                reader.join(5)
    log = agent.log_text()
    assert code == 70, log[-3000:]
    assert log.count("Traceback (most recent call last)") == 1, log
    assert "RuntimeError: injected %s fault" % fault in log
    assert "thread %s crashed" % thread in log or "pipeline thread %s crashed" % thread in log
    assert notify.times("STOPPING")


# ---- logs for journald and for log shippers --------------------------------------------------

def test_logs_to_the_journal_carry_priority_and_no_second_timestamp(tmp_path, sample_video):
    # given stderr is a stream whose device:inode $JOURNAL_STREAM names, as under systemd
    read_end, write_end = os.pipe()
    stat = os.fstat(write_end)
    env = {"JOURNAL_STREAM": "%d:%d" % (stat.st_dev, stat.st_ino)}
    proc = subprocess.Popen(agent_command(["run", "--no-mqtt", "--source", "file://" + sample_video,
                                           "--state-dir", str(tmp_path), "--max-frames", "3"]),
                            stdout=subprocess.DEVNULL, stderr=write_end, cwd=ROOT,
                            env=agent_env(extra=env))
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        lines = stream.read().splitlines()
    proc.wait(30)
    # then the agent's own log lines start with a syslog priority and no timestamp
    logged = [line for line in lines if line.startswith("<")]
    assert logged, lines
    assert all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in logged)
    assert any(line == "<6>INFO agent.daemon.service: ready: first frame processed" for line in logged)
    assert not any(line[3:7].isdigit() for line in logged)
    assert proc.returncode == 0


def test_journal_formatter_keeps_the_priority_on_every_traceback_line():
    from agent.daemon.logs import make_formatter
    formatter = make_formatter(json_lines=False, journal=True)
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("agent.x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                   sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert lines[0] == "<3>ERROR agent.x: failed here"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


@pytest.mark.parametrize("journal_stream, expected", [("", False), ("1:2", False),
                                                      ("x:y", False), (None, True)])
def test_stderr_is_journal_only_when_device_and_inode_match(tmp_path, journal_stream, expected):
    from agent.daemon.logs import stderr_is_journal
    with open(str(tmp_path / "stderr"), "w") as stream:
        stat = os.fstat(stream.fileno())
        value = "%d:%d" % (stat.st_dev, stat.st_ino) if journal_stream is None else journal_stream
        assert stderr_is_journal({"JOURNAL_STREAM": value}, stream) is expected


def test_log_json_writes_one_object_per_line(tmp_path, sample_video):
    run = run_agent(["run", "--no-mqtt", "--source", "file://" + sample_video, "--state-dir",
                     str(tmp_path), "--max-frames", "3", "--log-json"])
    assert run.returncode == 0, run.stderr
    entries = [json.loads(line) for line in run.stderr_lines()]
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(e["msg"] == "ready: first frame processed" for e in entries)


# ---- state directory from systemd ------------------------------------------------------------

@pytest.mark.parametrize("configured, granted, expected", [
    ("/var/lib/edgeagent", "/var/lib/other", "/var/lib/other"),      # default: systemd's wins
    ("/srv/agent", "/var/lib/other", "/srv/agent"),                  # explicit: the config wins
    ("/var/lib/edgeagent", "", "/var/lib/edgeagent"),                # not under systemd
    ("/var/lib/edgeagent", "/var/lib/a:/var/lib/b", "/var/lib/a"),   # several: the first
])
def test_state_directory_of_systemd_applies_only_to_the_default(configured, granted, expected):
    from agent.config.agent_config import config_from_dict
    from agent.daemon.lifecycle import with_state_directory
    config = config_from_dict({"state_dir": configured}, "test.yaml")
    assert with_state_directory(config, {"STATE_DIRECTORY": granted}).state_dir == expected


# ---- the parts, in process -------------------------------------------------------------------

class RecordingNotifier:
    """Stands in for sdnotify.Notifier: keeps what would have gone to the socket."""

    def __init__(self) -> None:
        self.sent = []

    def notify(self, *fields: str) -> bool:
        self.sent.append(fields)
        return True

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + text)


@pytest.mark.parametrize("progress, expected_pings", [
    ([True] * 10, 5),                         # ticks every 0.25 s, interval 0.5 s
    ([True] * 4 + [False] * 6, 2),            # a hang: none after it
    ([False] * 4 + [True] * 6, 3),            # recovers: pings again
])
def test_keepalive_pings_at_most_every_interval_and_only_while_progressing(progress,
                                                                           expected_pings):
    from agent.daemon.lifecycle import KeepAlive
    now = [0.0]
    notifier = RecordingNotifier()
    keepalive = KeepAlive(notifier, 0.5, clock=lambda: now[0])
    for progressing in progress:
        keepalive.tick(progressing, "test")
        now[0] += 0.25
    assert notifier.sent.count(("WATCHDOG=1",)) == expected_pings


def test_keepalive_is_silent_without_a_watchdog():
    from agent.daemon.lifecycle import KeepAlive
    notifier = RecordingNotifier()
    assert not KeepAlive(notifier, None).tick(True) and notifier.sent == []


def test_stuck_stage_names_the_stage_busy_too_long_and_clears_when_it_returns():
    import threading
    from agent.pipeline import PipelineRunner
    from agent.sources import open_source
    from agent.stats import PipelineStats
    from pipeline_fakes import WholeFrame
    release = threading.Event()

    def blocking_inference(frame):
        release.wait(5)
        raise RuntimeError("stop here")         # ends the run once released

    runner = PipelineRunner(open_source("synthetic://?frames=3&width=32&height=24"),
                            WholeFrame(blocking_inference), lambda result: None,
                            PipelineStats())
    runner.start()
    time.sleep(0.3)
    assert runner.stuck_stage(0.2) == "inference"
    assert runner.stuck_stage(5.0) is None
    release.set()
    assert runner.wait(5)
    assert runner.stuck_stage(0.0) is None and isinstance(runner.error, RuntimeError)


def test_thread_crash_is_reported_once_on_pythons_without_threading_excepthook(monkeypatch,
                                                                                caplog):
    # JetPack 4.6 runs Python 3.6: no threading.excepthook, so Thread.run is wrapped instead
    import threading
    from agent.daemon.lifecycle import CrashWatch, _wrap_thread_run
    monkeypatch.setattr(threading.Thread, "run", threading.Thread.run)   # restored afterwards
    watch = CrashWatch()
    _wrap_thread_run(watch.report)            # what install() does where excepthook is missing

    def die():
        raise ValueError("camera driver bug")
    thread = threading.Thread(target=die, name="camera-reader")
    with caplog.at_level(logging.ERROR, logger="agent.daemon.lifecycle"):
        thread.start()
        thread.join(5)
    assert watch.crashed == "camera-reader"
    critical = [r for r in caplog.records if r.levelno == logging.CRITICAL]
    assert len(critical) == 1 and critical[0].exc_info[0] is ValueError


def test_status_line_reports_the_processed_rate_every_few_seconds():
    from agent.daemon.lifecycle import StatusLine
    now = [0.0]
    notifier = RecordingNotifier()
    line = StatusLine(notifier, every_s=5.0, clock=lambda: now[0])
    for second in range(12):                  # 15 frames a second
        line.update("running face-detect on onnxruntime", second * 15, "running")
        now[0] += 1.0
    assert notifier.sent == [
        ("STATUS=running face-detect on onnxruntime: 15.0 fps, 75 frames, camera running",),
        ("STATUS=running face-detect on onnxruntime: 15.0 fps, 150 frames, camera running",)]


# ---- a hung stage: the stop keeps its promise, a reload never frees the backend --------------

def hung_agent_run(tmp_path, broker, sample_video, signum):
    """Run the faulty agent on a camera until results flow, hang inference, send `signum`:
    (exit code, seconds to exit, agent, notify socket, subscriber)."""
    fault_file = str(tmp_path / "fault")
    subscriber = Subscriber(broker.port, "edgeagent/dev1/#", client_id="hung-sub")
    with FfmpegStream(input_path=sample_video) as camera, NotifySocket() as notify:
        config = agent_config(tmp_path, stream_uri(camera), mqtt=mqtt_section(broker.port))
        with AgentProcess(config, notify=notify, watchdog_usec=int(10 * 1e6), entry=FAULTY,
                          env={"EDGEAGENT_TEST_FAULT_FILE": fault_file}) as agent:
            assert notify.wait_for("READY", timeout_s=60) is not None, agent.log_text()
            assert agent.wait_result(60, where=lambda p: p["seq"] >= 5), agent.log_text()
            with open(fault_file, "w") as handle:
                handle.write("hang")
            # the hang has set in once no new result came for a while
            assert wait_until(lambda: agent.results and time.monotonic() - agent.results[-1][0]
                              > 1.0, 30), agent.log_text()
            code, took = agent.stop(signum, timeout_s=60)
    return code, took, agent, notify, subscriber


def test_sigterm_with_a_hung_stage_exits_70_within_10_s_and_delivers_what_was_stored(
        tmp_path, broker, sample_video):
    code, took, agent, notify, subscriber = hung_agent_run(tmp_path, broker, sample_video,
                                                           signal.SIGTERM)
    log = agent.log_text()
    # then the agent exits 70 (systemd restarts it) within 10 s, the hung stage waited for once
    assert code == 70, log[-3000:]
    assert took <= 10.0, (took, log[-3000:])
    assert log.count("stage inference is hung") == 1, log[-3000:]
    assert "backend left open: the inference stage may still be inside it" in log
    assert notify.times("STOPPING")
    # and every result it stored reached the broker
    printed = agent.seqs()
    assert printed == list(range(1, len(printed) + 1))
    assert subscriber.wait_for(lambda msgs: dedupe(seqs_of(msgs)) == printed, timeout_s=15), \
        "broker has %d of %d results" % (len(dedupe(subscriber.seqs())), len(printed))
    subscriber.close()
    print("SIGTERM with inference hung: exit %d after %.2f s, %d results delivered" % (
        code, took, len(printed)))


def test_reload_with_a_hung_stage_exits_70_and_never_frees_the_backend(tmp_path, broker,
                                                                     sample_video):
    code, took, agent, notify, subscriber = hung_agent_run(tmp_path, broker, sample_video,
                                                           signal.SIGHUP)
    subscriber.close()
    log = agent.log_text()
    # then the reload began, found the stage hung, and the agent exits 70 instead of starting
    # a new pipeline beside a stage that may still use the old backend
    assert code == 70, log[-3000:]
    assert notify.times("RELOADING") and notify.times("STOPPING")
    assert "reload: stage inference is hung; exiting 70" in log, log[-3000:]
    assert "backend left open" in log and "closing backend" not in log
    assert len(agent.log_times(r"running face-detect on \w+ from")) == 1
    assert took <= 10.0, took
