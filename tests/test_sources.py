"""Frame sources chosen by URI: files, image folders, synthetic patterns, real HTTP streams
served by ffmpeg, and the camera schemes we cannot plug in here (CSI, picamera2) through
small fakes that mimic their real APIs."""

import os
import time

import cv2
import numpy as np
import pytest

from agent.errors import SourceError
from agent.sources import is_live, open_recovering, open_source, parse_uri
from agent.sources.csi import gstreamer_pipeline, has_gstreamer, open_csi
from agent.sources.picam import open_picam
from agent.sources.recovery import RecoveringSource
from agent.sources.uri import redact
from agent.sources.v4l2 import device_path
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


# ---- bad URIs: one clear error each ----------------------------------------------------

def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("hello, I am not a video")
    return "file://%s" % path


def _empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return "images://%s" % (tmp_path / "empty")


@pytest.mark.parametrize("make_uri, expected", [
    (lambda t: "file:///no/such/x.mp4", "file:///no/such/x.mp4: cannot open video (file missing)"),
    (_not_a_video, "cannot open video (OpenCV cannot decode it;"),
    (lambda t: "file://%s" % t, "cannot open video (a directory; use images://"),
    (lambda t: "images:///no/such/dir", "image directory /no/such/dir does not exist"),
    (_empty_dir, "has no jpg/jpeg/png/bmp files"),
    (lambda t: "ftp://host/x", "unknown source scheme 'ftp'; supported: file://, images://"),
    (lambda t: "v4l2:///dev/video99", "camera device /dev/video99 not found"),
    (lambda t: "synthetic://?width=abc", "width=abc must be an integer >= 1"),
    (lambda t: "synthetic://?fps=0", "fps=0 must be a number > 0"),
    (lambda t: "synthetic://?pattern=zebra", "pattern=zebra is unknown; use one of: bars"),
    (lambda t: "synthetic://?colour=red", "unknown query key 'colour' for synthetic:// sources"),
    (lambda t: "file:///x.avi?loop=maybe", "loop=maybe must be 1 or 0"),
    (lambda t: "v4l2:///dev/video0?fourcc=MJ", "fourcc=MJ must be 4 characters"),
    (lambda t: "csi://0?flip=9", "flip=9 must be 0-7"),
    (lambda t: "", "empty source"),
    (lambda t: "http://127.0.0.1:9/none?open_timeout_ms=500", "cannot connect to the stream"),
    (lambda t: "rtsp://cam/s?rtsp_transport=http", "rtsp_transport=http must be tcp or udp"),
    (lambda t: "rtsp://cam/s?open_timeout_ms=soon", "open_timeout_ms=soon must be an integer"),
])
def test_bad_uri_gives_one_clear_source_error(tmp_path, make_uri, expected):
    uri = make_uri(tmp_path)
    with pytest.raises(SourceError) as caught:
        open_source(uri)
    message = str(caught.value)
    assert message.startswith("source error: ")
    assert expected in message
    assert "\n" not in message


def test_password_never_appears_in_errors():
    uri = "rtsp://admin:s3cret@127.0.0.1:9/live?open_timeout_ms=500"
    with pytest.raises(SourceError) as caught:
        open_source(uri)
    assert "s3cret" not in str(caught.value) and "admin:***@127.0.0.1:9" in str(caught.value)
    assert redact("http://cam/x") == "http://cam/x"


def test_stream_uri_keeps_server_query_and_takes_only_agent_keys():
    spec = parse_uri("http://cam:8080/video?action=stream&read_timeout_ms=700&width=9")
    assert spec.target == "http://cam:8080/video?action=stream&width=9"
    assert spec.int_option("read_timeout_ms", 0) == 700


@pytest.mark.parametrize("uri, transport, target", [
    ("rtsp://cam/s", None, "rtsp://cam/s"),
    ("rtsp://cam/s?rtsp_transport=udp&profile=2", "udp", "rtsp://cam/s?profile=2"),
    ("rtsp://cam/s?rtsp_transport=TCP", "TCP", "rtsp://cam/s"),
    ("http://cam/s?rtsp_transport=udp", None, "http://cam/s?rtsp_transport=udp"),  # not ours
])
def test_rtsp_transport_is_the_agents_key_on_rtsp_only(uri, transport, target):
    spec = parse_uri(uri)
    assert spec.options.get("rtsp_transport") == transport and spec.target == target


@pytest.mark.parametrize("before, after_open", [
    (None, "rtsp_transport;udp"),
    ("stimeout;5000000|rtsp_transport;tcp", "stimeout;5000000|rtsp_transport;udp"),
])
def test_ffmpeg_options_are_set_for_the_open_only_and_keep_the_users_own(monkeypatch, before,
                                                                        after_open):
    from agent.sources.stream import FFMPEG_OPTIONS_ENV, _with_ffmpeg_options
    if before is None:
        monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)
    else:
        monkeypatch.setenv(FFMPEG_OPTIONS_ENV, before)
    seen = _with_ffmpeg_options({"rtsp_transport": "udp"},
                                lambda: os.environ.get(FFMPEG_OPTIONS_ENV))
    assert seen == after_open and os.environ.get(FFMPEG_OPTIONS_ENV) == before


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


@pytest.mark.parametrize("uri, live", [
    ("file:///x.mp4", False), ("images:///d", False), ("synthetic://", False),
    ("synthetic://?live=1", True), ("rtsp://cam/s", True), ("https://cam/s", True),
    ("v4l2:///dev/video0", True), ("csi://0", True), ("picam://0", True)])
def test_which_uris_are_live(uri, live):
    assert is_live(parse_uri(uri)) is live


@pytest.mark.parametrize("target, path", [
    ("", "/dev/video0"), ("2", "/dev/video2"), ("/dev/video1", "/dev/video1")])
def test_v4l2_device_path(target, path):
    assert device_path(target) == path


# ---- CSI (Jetson) ------------------------------------------------------------------------

def test_csi_pipeline_string():
    assert gstreamer_pipeline(1, 1920, 1080, 29.97) == (
        "nvarguscamerasrc sensor-id=1 ! "
        "video/x-raw(memory:NVMM),width=1920,height=1080,framerate=30/1 ! "
        "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        "appsink drop=1 max-buffers=1")
    assert "nvvidconv flip-method=2 ! " in gstreamer_pipeline(0, 640, 480, 30, flip=2)


@pytest.mark.parametrize("line, present", [
    ("    GStreamer:                   YES (1.16.3)", True),
    ("    GStreamer:                   NO", False),
    ("    FFMPEG:                      YES", False),
])
def test_has_gstreamer_reads_build_information(line, present):
    assert has_gstreamer("Video I/O:\n    DC1394: NO\n%s\n" % line) is present


def test_csi_without_gstreamer_says_to_use_jetpack_opencv():
    # this machine's real OpenCV wheel has no GStreamer
    assert not has_gstreamer(cv2.getBuildInformation())
    with pytest.raises(SourceError, match="csi://0: this OpenCV has no GStreamer support; "
                                          "on Jetson use the system OpenCV from JetPack"):
        open_source("csi://0")
    with pytest.raises(SourceError, match="no GStreamer support"):
        open_recovering("csi://0")       # no retry can fix it: raised at once


class FakeCapture:
    """Mimics cv2.VideoCapture: records what it was opened with."""

    def __init__(self, pipeline, api, opens=True):
        self.pipeline, self.api, self.opens = pipeline, api, opens
        self.released = False

    def isOpened(self):
        return self.opens

    def read(self):
        time.sleep(0.01)
        return True, np.full((720, 1280, 3), 7, dtype=np.uint8)

    def release(self):
        self.released = True


@pytest.mark.parametrize("opens", [True, False])
def test_csi_opens_pipeline_with_fake_gstreamer_build_and_fake_capture(opens):
    # given OpenCV reporting GStreamer and a capture that records its pipeline
    opened = []

    def factory(pipeline, api):
        opened.append(FakeCapture(pipeline, api, opens))
        return opened[-1]

    spec = parse_uri("csi://1?fps=60", width=1280, height=720)
    gstreamer_yes = lambda: "  GStreamer:  YES (1.16.3)"
    if not opens:
        with pytest.raises(SourceError, match="cannot open CSI camera sensor-id=1"):
            open_csi(spec, build_info=gstreamer_yes, capture_factory=factory)
        assert opened[0].released
        return
    source = open_csi(spec, build_info=gstreamer_yes, capture_factory=factory)
    frame = source.read(timeout=1.0)
    source.close()
    assert opened[0].api == cv2.CAP_GSTREAMER
    assert opened[0].pipeline == gstreamer_pipeline(1, 1280, 720, 60)
    assert frame.image.shape == (720, 1280, 3) and source.live is True


# ---- picamera2 (Raspberry Pi) ------------------------------------------------------------

def test_picam_without_picamera2_says_how_to_install_it():
    # picamera2 is not installed on this machine
    with pytest.raises(SourceError, match="picamera2 not installed; on Raspberry Pi OS: "
                                          "sudo apt install python3-picamera2"):
        open_source("picam://0")


class FakePicamera2:
    """Mimics the picamera2 API used: Picamera2(n), create_video_configuration, configure,
    start, capture_array("main"), stop, close. "RGB888" arrays are [B, G, R] per pixel."""

    cameras = []

    def __init__(self, camera_num=0):
        self.camera_num, self.calls = camera_num, []
        FakePicamera2.cameras.append(self)

    def create_video_configuration(self, main=None, controls=None):
        return {"main": main, "controls": controls}

    def configure(self, config):
        self.calls.append(("configure", config))

    def start(self):
        self.calls.append(("start",))

    def capture_array(self, name="main"):
        time.sleep(0.01)
        width, height = self.calls[0][1]["main"]["size"]
        image = np.zeros((height, width, 3), dtype=np.uint8)
        image[..., 0] = 200          # blue, in [B, G, R] order
        return image

    def stop(self):
        self.calls.append(("stop",))

    def close(self):
        self.calls.append(("close",))


def test_picam_frames_with_fake_picamera2_api():
    module = type("picamera2", (), {"Picamera2": FakePicamera2})
    spec = parse_uri("picam://1?width=320&height=240&fps=15")
    source = open_picam(spec, import_module=lambda name: module)
    frame = source.read(timeout=1.0)
    source.close()
    time.sleep(0.1)     # the reader thread releases the camera
    camera = FakePicamera2.cameras[-1]
    assert camera.camera_num == 1
    assert camera.calls[0] == ("configure", {"main": {"size": (320, 240), "format": "RGB888"},
                                             "controls": {"FrameRate": 15.0}})
    assert camera.calls[-2:] == [("stop",), ("close",)]
    assert frame.image.shape == (240, 320, 3)
    assert frame.image[0, 0].tolist() == [200, 0, 0]     # blue stays blue in BGR


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
