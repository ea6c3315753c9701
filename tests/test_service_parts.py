"""The service's daemon parts in process: systemd's state directory, the watchdog keep-alive,
stuck stages, thread crashes on Python 3.6 and the status line."""

import logging
import time

import pytest


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
    entered, release = threading.Event(), threading.Event()

    def blocking_inference(frame):
        entered.set()
        release.wait(60)
        raise RuntimeError("stop here")         # ends the run once released

    # given an inference stage that blocks on its first frame
    runner = PipelineRunner(open_source("synthetic://?frames=3&width=32&height=24"),
                            WholeFrame(blocking_inference), lambda result: None,
                            PipelineStats())
    runner.start()
    assert entered.wait(30)
    # when it has been busy for longer than the limit, then it is named; a longer limit is not
    deadline = time.monotonic() + 30
    while runner.stuck_stage(0.2) != "inference" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert runner.stuck_stage(0.2) == "inference"
    assert runner.stuck_stage(3600.0) is None
    # when it returns (raising), then nothing is stuck and the error is kept
    release.set()
    assert runner.wait(30)
    assert runner.stuck_stage(0.0) is None and isinstance(runner.error, RuntimeError)


def test_thread_crash_is_reported_once_on_pythons_without_threading_excepthook(monkeypatch,
                                                                                caplog):
    # JetPack 4.6 runs Python 3.6: no threading.excepthook, so Thread.run is wrapped instead
    import threading
    from agent.daemon.lifecycle import CrashWatch, _wrap_thread_run
    # restored afterwards; unwrapped, in case a service ran in this process before (3.6)
    monkeypatch.setattr(threading.Thread, "run",
                        getattr(threading.Thread.run, "__wrapped__", threading.Thread.run))
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
