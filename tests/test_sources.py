"""Frame sources chosen by URI: files, image folders, synthetic patterns and real HTTP streams
served by ffmpeg (CSI and picamera2 through fakes: tests/test_sources_board.py)."""

import os
import time

import cv2
import numpy as np
import pytest

from agent.errors import SourceError
from agent.sources import open_recovering, open_source
from agent.sources.recovery import RecoveringSource
from streams import FfmpegStream

FRAMES = 12
STEP = 20          # frame i of the test video is filled with gray level i * STEP


def read_all(source, limit=1000):
    frames = []
    while len(frames) < limit:
        frame = source.read()
        if frame is None:
            break
        frames.append(frame)
    return frames


@pytest.fixture
def video(tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 48))
    for i in range(FRAMES):
        writer.write(np.full((48, 64, 3), i * STEP, dtype=np.uint8))
    writer.release()
    return path


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name, level in [("b.png", 100), ("a.jpg", 50), ("c.BMP", 150)]:
        cv2.imwrite(str(folder / name), np.full((24, 32, 3), level, dtype=np.uint8))
    (folder / "notes.txt").write_text("not a picture")
    return str(folder)


# ---- files ------------------------------------------------------------------------------

@pytest.mark.parametrize("make_uri", [lambda p: "file://" + p, lambda p: p],
                         ids=["file-uri", "plain-path"])
def test_file_source_reads_every_frame_in_order_then_ends(video, make_uri):
    # given a 12-frame MJPG video, frame i gray level i*20
    source = open_source(make_uri(video))
    # when every frame is read
    frames = read_all(source)
    # then indices are exact, content matches, and the end is None (twice)
    assert [f.index for f in frames] == list(range(FRAMES))
    assert [round(f.image.mean() / STEP) for f in frames] == list(range(FRAMES))
    assert source.read() is None and source.read() is None
    assert source.live is False
    first = frames[0]
    assert (first.image.shape, first.image.dtype) == ((48, 64, 3), np.uint8)
    assert abs(first.ts - time.time()) < 5 and first.mono <= time.monotonic()
    source.close()


def test_file_uri_with_relative_path(video, monkeypatch):
    # given the working directory holding the video
    monkeypatch.chdir(os.path.dirname(video))
    # when it is named relative to it
    frames = read_all(open_source("file://" + os.path.basename(video)))
    # then it opens
    assert len(frames) == FRAMES


@pytest.mark.parametrize("uri_suffix, loop_arg, loops", [
    ("?loop=1", False, True),      # URI turns looping on
    ("", True, True),              # the profile/argument turns it on
    ("?loop=0", True, False),      # the URI wins over the argument
])
def test_file_loop_keeps_counting_indices(video, uri_suffix, loop_arg, loops):
    # given a looping (or not) file source
    source = open_source("file://" + video + uri_suffix, loop=loop_arg)
    # when reading up to 2.5 passes
    frames = read_all(source, limit=int(FRAMES * 2.5))
    # then indices count on across passes and the pictures repeat
    expected = int(FRAMES * 2.5) if loops else FRAMES
    assert [f.index for f in frames] == list(range(expected))
    assert [round(f.image.mean() / STEP) for f in frames] == [i % FRAMES for i in range(expected)]


def test_frames_are_read_only_so_no_stage_changes_another_stages_picture(video):
    frame = open_source(video).read()
    with pytest.raises(ValueError):
        frame.image[0, 0, 0] = 1


# ---- image folders ----------------------------------------------------------------------

def test_images_dir_reads_pictures_sorted_by_name(image_dir):
    # given a.jpg (50), b.png (100), c.BMP (150) and a text file
    source = open_source("images://" + image_dir)
    # when read to the end
    frames = read_all(source)
    # then the three pictures come in name order with indices 0..2
    assert [f.index for f in frames] == [0, 1, 2]
    assert [int(round(f.image.mean())) for f in frames] == [50, 100, 150]
    assert source.live is False and source.read() is None


def test_images_dir_loop(image_dir):
    frames = read_all(open_source("images://" + image_dir + "?loop=1"), limit=7)
    assert [f.index for f in frames] == list(range(7))
    assert [int(round(f.image.mean())) for f in frames] == [50, 100, 150, 50, 100, 150, 50]


# ---- synthetic --------------------------------------------------------------------------

@pytest.mark.parametrize("pattern, width, height", [
    ("bars", 640, 480), ("bars", 33, 17), ("moving_box", 320, 240), ("moving_box", 8, 8)])
def test_synthetic_frames_have_the_asked_size_and_count(pattern, width, height):
    uri = "synthetic://?pattern=%s&width=%d&height=%d&frames=5" % (pattern, width, height)
    source = open_source(uri)
    frames = read_all(source)
    assert [f.index for f in frames] == [0, 1, 2, 3, 4]
    assert all(f.image.shape == (height, width, 3) and f.image.dtype == np.uint8
               for f in frames)
    assert source.live is False


@pytest.mark.parametrize("uri, shape", [("synthetic://?frames=2", (120, 160, 3)),
                                         ("synthetic://?frames=2&width=80", (120, 80, 3))])
def test_synthetic_size_from_arguments_unless_the_uri_says_otherwise(uri, shape):
    source = open_source(uri, width=160, height=120)
    first, second = source.read(), source.read()
    assert first.image.shape == shape
    assert not np.array_equal(first.image, second.image)     # the box moves


def test_live_synthetic_is_paced_by_fps():
    # given a live synthetic camera at 20 fps
    source = open_source("synthetic://?live=1&fps=20&width=32&height=24")
    start = time.monotonic()
    # when 10 frames are read
    frames = [source.read(timeout=1.0) for _ in range(10)]
    elapsed = time.monotonic() - start
    source.close()
    # then they took about 10 frame periods (the first comes at once)
    assert all(f is not None for f in frames)
    assert 0.4 <= elapsed <= 5.0, elapsed       # pacing: never faster; a loaded machine is slower
    assert source.live is True


def test_live_synthetic_with_frame_limit_fails_like_a_dead_camera():
    source = open_source("synthetic://?live=1&fps=100&frames=3&width=32&height=24")
    frames = [source.read(timeout=1.0) for _ in range(3)]
    with pytest.raises(SourceError, match="stream ended or connection lost after 3 frames"):
        while True:
            source.read(timeout=1.0)
    indices = [f.index for f in frames if f is not None]
    assert source.captured == 3 and indices and indices == sorted(set(indices))


def test_looping_file_that_vanishes_is_a_source_error_not_an_end(tmp_path, video):
    # given a looping file source
    path = str(tmp_path / "vanishing.avi")
    with open(video, "rb") as src, open(path, "wb") as dst:
        dst.write(src.read())
    source = open_source("file://%s?loop=1" % path)
    first = source.read()
    # when the file is deleted while it plays
    os.remove(path)
    # then the pass that is open plays on, and the loop fails with the file named
    with pytest.raises(SourceError, match=r"vanishing.avi\?loop=1: cannot loop: cannot open "
                                          r"video \(file missing\)"):
        read_all(source, limit=10 * FRAMES)
    assert first.index == 0
    source.close()


# ---- real HTTP stream (ffmpeg) -----------------------------------------------------------

@pytest.fixture
def camera():
    with FfmpegStream(size=(320, 240), fps=15) as stream:
        yield stream


def test_http_stream_delivers_frames(camera):
    source = open_source(camera.url)
    frames = [source.read(timeout=3.0) for _ in range(10)]
    source.close()
    assert source.live is True
    assert all(f is not None and f.image.shape == (240, 320, 3) for f in frames)
    indices = [f.index for f in frames]
    assert indices == sorted(set(indices))


def test_http_stream_drops_stale_frames_when_the_consumer_is_slow(camera):
    # given a 15 fps stream and a consumer that needs 0.3 s per frame
    source = open_source(camera.url)
    source.read(timeout=3.0)
    ages, indices = [], []
    for _ in range(5):
        time.sleep(0.3)
        frame = source.read(timeout=3.0)
        ages.append(time.monotonic() - frame.mono)
        indices.append(frame.index)
    source.close()
    # then about 4 frames arrive per read: old ones are dropped and counted, and every
    # frame handed out is the newest (younger than the consumer's pause)
    assert source.dropped >= 5
    assert all(b - a >= 2 for a, b in zip(indices, indices[1:])), indices
    assert max(ages) < 0.3, ages      # grabbed after the consumer's pause began: not held


def test_open_recovering_wraps_live_sources_only(camera, video):
    live = open_recovering(camera.url, stall_timeout_s=2.0)
    plain = open_recovering(video)
    try:
        assert isinstance(live, RecoveringSource) and live.read(timeout=3.0) is not None
        assert not isinstance(plain, RecoveringSource) and plain.live is False
    finally:
        live.close()
        plain.close()
