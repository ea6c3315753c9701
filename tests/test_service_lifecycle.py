"""The agent as systemd runs it: a real process, a real NOTIFY_SOCKET, a real broker, a real
ffmpeg camera. READY=1 after the first result, WATCHDOG=1 only while frames flow, STOPPING=1 and
exit 0 on SIGTERM/SIGINT with nothing lost, exit 70 with one traceback when a thread dies,
and exit 70 when a stage hangs at stop or reload. Faults come from tests/faulty_agent.py (the
real service with a faulty assembler). Logs: test_service_logs.py; in-process parts:
test_service_parts.py."""

import os
import signal
import sys
import time

import pytest

from agent_proc import AgentProcess, NotifySocket, mqtt_section, wait_until, write_config
from broker import Subscriber, dedupe
from conftest import ROOT
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
