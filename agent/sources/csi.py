"""csi:// sources: Jetson CSI cameras (csi://0) through nvarguscamerasrc and GStreamer.

pip's opencv-python wheels have no GStreamer; on Jetson the JetPack OpenCV (python3-opencv)
has it. The build check and the capture factory are parameters so both branches can be tested.
"""

import logging
from typing import Callable

import cv2

from .live import LiveSource, capture_grab
from .uri import SourceSpec

log = logging.getLogger(__name__)

DEFAULT_SIZE = (1280, 720)
DEFAULT_FPS = 30.0


def gstreamer_pipeline(sensor_id: int, width: int, height: int, fps: float,
                       flip: int = 0) -> str:
    """The nvarguscamerasrc -> BGR appsink pipeline; appsink keeps only the newest buffer."""
    convert = "nvvidconv flip-method=%d" % flip if flip else "nvvidconv"
    return ("nvarguscamerasrc sensor-id=%d ! "
            "video/x-raw(memory:NVMM),width=%d,height=%d,framerate=%d/1 ! "
            "%s ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
            "appsink drop=1 max-buffers=1" % (sensor_id, width, height, int(round(fps)), convert))


def has_gstreamer(build_info: str) -> bool:
    """True when cv2.getBuildInformation() reports 'GStreamer: YES ...'."""
    for line in build_info.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False


def check_gstreamer(spec: SourceSpec,
                    build_info: Callable[[], str] = cv2.getBuildInformation) -> None:
    """SourceError unless this OpenCV can run GStreamer pipelines (no retry can fix that)."""
    if not has_gstreamer(build_info()):
        raise spec.error(
            "this OpenCV has no GStreamer support; on Jetson use the system OpenCV from "
            "JetPack (python3-opencv): pip uninstall opencv-python opencv-python-headless, "
            "and create the venv with --system-site-packages")


def open_csi(spec: SourceSpec, build_info: Callable[[], str] = cv2.getBuildInformation,
             capture_factory: Callable = cv2.VideoCapture) -> LiveSource:
    if not (spec.target or "0").isdigit():
        raise spec.error("csi://%s: the sensor id must be a number, e.g. csi://0" % spec.target)
    sensor_id = int(spec.target or "0")
    flip = spec.int_option("flip", 0)
    if flip > 7:
        raise spec.error("flip=%d must be 0-7 (nvvidconv flip-method; 2 = rotate 180)" % flip)
    check_gstreamer(spec, build_info)
    width, height = spec.size(DEFAULT_SIZE)
    pipeline = gstreamer_pipeline(sensor_id, width, height, spec.fps or DEFAULT_FPS, flip)
    capture = capture_factory(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        capture.release()
        raise spec.error(
            "cannot open CSI camera sensor-id=%d (ribbon cable seated? camera detected? check: "
            "gst-launch-1.0 nvarguscamerasrc sensor-id=%d num-buffers=1 ! fakesink; "
            "or: sudo systemctl restart nvargus-daemon)" % (sensor_id, sensor_id))
    log.info("%s: opened %s", spec.uri, pipeline)
    return LiveSource(spec.uri, capture_grab(capture), capture.release)
