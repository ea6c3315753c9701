"""Camera schemes we cannot plug in here, through small fakes that mimic their real APIs:
CSI on Jetson (GStreamer through OpenCV) and picamera2 on the Raspberry Pi."""

import time

import cv2
import numpy as np
import pytest

from agent.errors import SourceError
from agent.sources import open_recovering, open_source, parse_uri
from agent.sources.csi import gstreamer_pipeline, has_gstreamer, open_csi
from agent.sources.picam import open_picam

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
