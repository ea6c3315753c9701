"""Camera recovery: RecoveringSource against real ffmpeg streams that die, come back and
stall with the connection open, plus fast checks with synthetic cameras and a small fake."""

import threading
import time

import pytest

from agent.errors import SourceError
from agent.sources import open_source
from agent.sources.recovery import CAMERA_LOST, RUNNING, STOPPED, RecoveringSource
from streams import FfmpegStream, next_frame, wait_until

LIVE_SYNTH = "synthetic://?live=1&fps=100&width=32&height=24"


# ---- fast: synthetic cameras and a recording fake ----------------------------------------

def test_camera_that_dies_is_reopened_and_indices_keep_counting():
    # given a live synthetic camera that dies after every 5 frames
    opens = []

    def open_camera():
        opens.append(time.monotonic())
        return open_source(LIVE_SYNTH + "&frames=5")

    source = RecoveringSource(open_camera, stall_timeout_s=1.0, backoff_initial_s=0.02,
                              backoff_max_s=0.05)
    # when frames are read across several deaths
    indices = []
    while len(opens) < 4 and len(indices) < 200:
        frame = source.read(timeout=1.0)
        if frame is not None:
            indices.append(frame.index)
    source.close()
    # then every reopen is counted and indices never repeat or go back
    assert indices == sorted(set(indices))
    assert source.errors >= 3 and source.reconnects >= 2 and source.stalls == 0
    assert source.reconnects <= source.errors <= source.reconnects + 1
    assert max(indices) < 5 * len(opens)
    assert source.state == STOPPED


class StallingCamera:
    """A live source that gives `frames` frames, then nothing while staying 'connected'."""

    live = True
    uri = "fake://stalling"

    def __init__(self, frames):
        self._source = open_source(LIVE_SYNTH + "&frames=%d" % frames)
        self.closed = False

    def read(self, timeout=None):
        try:
            return self._source.read(timeout=timeout)
        except SourceError:       # the frames ran out: behave like a frozen stream
            time.sleep(timeout or 0)
            return None

    def close(self):
        self.closed = True
        self._source.close()


@pytest.mark.parametrize("stall_timeout_s", [0.3, 0.6])
def test_stall_is_detected_after_stall_timeout(stall_timeout_s):
    # given a camera that freezes after 3 frames, every time it is opened
    cameras = []

    def open_camera():
        cameras.append(StallingCamera(3))
        return cameras[-1]

    source = RecoveringSource(open_camera, stall_timeout_s=stall_timeout_s,
                              backoff_initial_s=0.3, backoff_max_s=0.3)
    # when the first stall happens
    last = None
    while source.stalls == 0:
        frame = source.read(timeout=0.05)
        last = frame or last
    detected_after = time.monotonic() - last.mono
    reopened = wait_until(lambda: len(cameras) >= 2, 2.0)
    source.close()
    # then it was detected stall_timeout after the last frame (+ one poll), and the frozen
    # camera was closed and a new one opened
    assert stall_timeout_s <= detected_after <= stall_timeout_s + 1.0, detected_after
    assert cameras[0].closed and reopened


def test_camera_missing_at_start_is_lost_then_found():
    # given a camera that cannot be opened twice, then can
    attempts = []

    def open_camera():
        attempts.append(1)
        if len(attempts) <= 2:
            raise SourceError("v4l2:///dev/video0: camera device /dev/video0 not found")
        return open_source(LIVE_SYNTH)

    source = RecoveringSource(open_camera, stall_timeout_s=1.0, backoff_initial_s=0.05,
                              backoff_max_s=0.1)
    # then it starts lost, without raising, and recovers
    assert source.state == CAMERA_LOST
    assert source.last_error == "camera device /dev/video0 not found"
    frame = next_frame(source, 0.0, timeout_s=3.0)
    assert frame is not None and frame.index == 0
    assert (source.state, source.open_failures, source.reconnects) == (RUNNING, 2, 1)
    source.close()


def test_read_never_blocks_longer_than_its_timeout_while_lost():
    def never_opens():
        raise SourceError("rtsp://cam: cannot connect")

    source = RecoveringSource(never_opens, stall_timeout_s=1.0, backoff_initial_s=30.0,
                              backoff_max_s=30.0)
    start = time.monotonic()
    results = [source.read(timeout=0.1) for _ in range(3)]
    default = source.read()
    elapsed = time.monotonic() - start
    close_start = time.monotonic()
    source.close()                      # interrupts the 30 s backoff sleep
    assert results == [None, None, None] and default is None
    assert elapsed < 0.3 + source.read_timeout_s + 2.0     # far below the 30 s backoff
    assert time.monotonic() - close_start < 5.0
    assert source.state == STOPPED and source.read() is None


def test_wrapped_file_delivers_every_frame_and_ends_cleanly(tmp_path):
    # given a 40-frame not-live source wrapped in recovery and a slow reader
    source = RecoveringSource(lambda: open_source("synthetic://?frames=40&width=16&height=8"),
                              stall_timeout_s=0.2)
    frames = []
    while True:
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
        if len(frames) % 20 == 0:
            time.sleep(0.3)        # longer than stall_timeout: a file never "stalls"
    # then nothing is dropped, the end is clean and nothing was "recovered"
    assert [f.index for f in frames] == list(range(40))
    assert source.live is False and source.state == STOPPED
    assert (source.dropped, source.stalls, source.errors, source.reconnects) == (0, 0, 0, 0)
    source.close()


def test_failing_file_raises_its_error_once_instead_of_reopening(tmp_path):
    import cv2
    import numpy as np
    folder = tmp_path / "pics"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (folder / "b.png").write_bytes(b"broken")
    opens = []

    def open_folder():
        opens.append(1)
        return open_source("images://%s" % folder)

    source = RecoveringSource(open_folder, stall_timeout_s=1.0)
    assert source.read().index == 0
    with pytest.raises(SourceError, match="cannot decode image"):
        source.read()
    assert source.read() is None and len(opens) == 1 and source.state == STOPPED


def test_close_from_another_thread_wakes_a_waiting_reader():
    source = RecoveringSource(lambda: open_source("synthetic://?frames=1"), stall_timeout_s=1.0)
    source.read()
    # the file ended; a reader waiting now must not hang
    done = threading.Event()
    threading.Thread(target=lambda: (source.read(), done.set()), daemon=True).start()
    source.close()
    assert done.wait(1.0)


# ---- real streams: ffmpeg dies, comes back, stalls ---------------------------------------

def stream_uri(camera, read_timeout_ms=4000):
    return "%s?open_timeout_ms=2000&read_timeout_ms=%d" % (camera.url, read_timeout_ms)


def test_reconnects_after_each_server_restart_and_counts_them_exactly():
    resumes = []
    with FfmpegStream(size=(160, 120), fps=15) as camera:
        source = RecoveringSource(lambda: open_source(stream_uri(camera)), stall_timeout_s=2.0,
                                  backoff_initial_s=0.2, backoff_max_s=1.0)
        indices = [next_frame(source, 0.0).index]
        for cycle in range(5):
            # when the camera dies
            camera.stop()
            assert wait_until(lambda: source.state == CAMERA_LOST, 2.0)
            time.sleep(0.3)
            # and comes back
            camera.start()
            back = time.monotonic()
            frame = next_frame(source, back, timeout_s=5.0)
            # then frames resume within 5 s
            assert frame is not None, "no frame within 5 s of restart %d" % (cycle + 1)
            resumes.append(frame.mono - back)
            indices.append(frame.index)
            assert source.state == RUNNING
        source.close()
    assert (source.reconnects, source.errors, source.stalls) == (5, 5, 0)
    assert indices == sorted(set(indices))
    assert max(resumes) < 5.0
    print("resume after restart: max %.2f s, mean %.2f s" % (max(resumes),
                                                            sum(resumes) / len(resumes)))


def test_stall_with_open_connection_is_detected_and_recovered_after_resume():
    stall_timeout_s = 1.5
    detections, resumes = [], []
    with FfmpegStream(size=(160, 120), fps=15) as camera:
        source = RecoveringSource(lambda: open_source(stream_uri(camera)),
                                  stall_timeout_s=stall_timeout_s, backoff_initial_s=0.2,
                                  backoff_max_s=1.0)
        assert next_frame(source, 0.0) is not None
        for cycle in range(2):
            # when the stream freezes with its connection open
            camera.stall()
            frozen = time.monotonic()
            assert wait_until(lambda: source.stalls == cycle + 1, stall_timeout_s + 1.0)
            detections.append(time.monotonic() - frozen)
            assert source.state == CAMERA_LOST
            # and later thaws
            time.sleep(0.5)
            camera.resume()
            thawed = time.monotonic()
            frame = next_frame(source, thawed, timeout_s=5.0)
            assert frame is not None
            resumes.append(frame.mono - thawed)
        source.close()
    # then each stall was detected within stall_timeout (+ one frame period and a poll)
    assert all(stall_timeout_s - 0.1 <= d <= stall_timeout_s + 1.5 for d in detections), \
        detections
    assert (source.stalls, source.reconnects) == (2, 2)
    print("stall detected after %s s; resumed %s s after SIGCONT" % (
        ["%.2f" % d for d in detections], ["%.2f" % r for r in resumes]))


def test_camera_reconnect_settings_reach_the_recovering_source():
    # given a config with its own reconnect settings and a live camera source
    from agent.daemon.assemble import Overrides, make_plan, open_source_for
    from agent.config.agent_config import config_from_dict
    config = config_from_dict({"camera": {"reconnect_initial_s": 0.05, "reconnect_max_s": 0.5},
                               "source": LIVE_SYNTH}, "test.yaml")
    # when the service opens its source
    source = open_source_for(make_plan(config, Overrides()), config)
    try:
        # then the retries follow them: 0.05 s doubling, never above 0.5 s
        delays = [source._backoff.next_delay() for _ in range(6)]
    finally:
        source.close()
    assert isinstance(source, RecoveringSource)
    assert 0.04 <= delays[0] <= 0.06 and max(delays) == pytest.approx(0.5, abs=0.1)
    assert max(delays) <= 0.5
