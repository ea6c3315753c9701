"""Camera faults against the real agent process: an ffmpeg MJPEG camera on 127.0.0.1 showing a
face is killed and restarted 10 times, then frozen with its connection open. Each fault is seen
within camera.stall_timeout_s, results come back within 5 s of the camera, the process never
restarts, and the health payload at a real broker counts reconnects and stalls exactly."""

import time

import pytest

from agent_proc import AgentProcess, mqtt_section, write_config
from broker import Subscriber
from streams import FfmpegStream

STALL_TIMEOUT_S = 1.5
RESUME_S = 5.0
HEALTH = "edgeagent/cam1/health"


@pytest.fixture
def camera(sample_video, tmp_path):
    with FfmpegStream(input_path=sample_video, log_path=str(tmp_path / "ffmpeg.log")) as running:
        yield running


@pytest.fixture
def agent(tmp_path, broker, camera):
    config = write_config(
        str(tmp_path / "config.yaml"), device={"id": "cam1"}, pipeline="face-detect",
        source=camera.url + "?open_timeout_ms=2000&read_timeout_ms=4000",
        state_dir=str(tmp_path / "state"), mqtt=mqtt_section(broker.port),
        camera={"stall_timeout_s": STALL_TIMEOUT_S}, health={"interval_s": 0.5})
    with AgentProcess(config) as running:
        assert running.wait_result(30) is not None, running.log_text()
        yield running


@pytest.fixture
def health(broker):
    subscriber = Subscriber(broker.port, HEALTH, client_id="camera-faults-health")
    yield subscriber
    subscriber.close()


def next_health(health, timeout_s: float = 3.0) -> dict:
    """The first health payload published after this call."""
    seen = len(health.received())
    assert health.wait_for(lambda msgs: len(msgs) > seen, timeout_s), "no health in %s s" % (
        timeout_s)
    return health.received()[-1].json()


def resume_after(agent, back: float) -> float:
    """Seconds from the camera's return to the first result of a new frame."""
    resumed = agent.wait_result(RESUME_S + 1.0, after=back)
    assert resumed is not None, agent.log_text()[-3000:]
    return resumed - back


def test_camera_killed_10_times_is_reconnected_each_time_without_a_restart(agent, camera, health):
    detected, resumed = [], []
    for cycle in range(10):
        # when the camera dies
        killed = time.monotonic()
        camera.stop()
        lost = agent.wait_log(r"camera lost", STALL_TIMEOUT_S + 1.0, after=killed)
        assert lost is not None, "kill %d not detected: %s" % (cycle + 1, agent.log_text()[-2000:])
        detected.append(lost - killed)
        time.sleep(0.3)
        # and comes back
        back = time.monotonic()
        camera.start()
        resumed.append(resume_after(agent, back))
    # then every loss was seen within the stall timeout, results resumed within 5 s,
    assert max(detected) <= STALL_TIMEOUT_S + 1.0, detected
    assert max(resumed) < RESUME_S, resumed
    # the same process kept running, and health counts exactly 10 reconnects and no stall
    assert agent.running
    assert len(agent.log_times(r"INFO agent.daemon.service: edgeagent .* on ")) == 1
    payload = next_health(health)
    assert (payload["camera"]["reconnects"], payload["camera"]["stalls"]) == (10, 0), payload
    assert payload["camera"]["state"] == "running" and payload["state"] == "running"
    print("kill detected after max %.2f s; results back after max %.2f s (mean %.2f s)" % (
        max(detected), max(resumed), sum(resumed) / len(resumed)))


def test_frozen_camera_is_detected_as_a_stall_and_recovered_without_a_restart(
        agent, camera, health):
    detected, resumed, lost_states = [], [], []
    for cycle in range(2):
        # when the camera freezes with its connection open
        frozen = time.monotonic()
        camera.stall()
        lost = agent.wait_log(r"camera lost \(stalled", STALL_TIMEOUT_S + 2.0, after=frozen)
        assert lost is not None, "stall %d not detected: %s" % (cycle + 1,
                                                                 agent.log_text()[-2000:])
        detected.append(lost - frozen)
        lost_states.append(next_health(health)["state"])
        # and thaws
        thawed = time.monotonic()
        camera.resume()
        resumed.append(resume_after(agent, thawed))
    # then each stall was seen after stall_timeout_s (not before), results resumed within 5 s
    assert all(STALL_TIMEOUT_S - 0.1 <= d <= STALL_TIMEOUT_S + 1.5 for d in detected), detected
    assert max(resumed) < RESUME_S, resumed
    assert lost_states == ["camera_lost", "camera_lost"]
    # and the same process counts exactly 2 stalls and 2 reconnects
    assert agent.running
    payload = next_health(health)
    assert (payload["camera"]["stalls"], payload["camera"]["reconnects"]) == (2, 2), payload
    print("stall detected after %s s; results back after %s s" % (
        ["%.2f" % d for d in detected], ["%.2f" % r for r in resumed]))
