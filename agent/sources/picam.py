"""picam:// sources: Raspberry Pi cameras (libcamera) through picamera2.

picamera2's "RGB888" format stores each pixel as [B, G, R] (picamera2 manual, appendix A),
which is OpenCV's BGR order already, so frames are passed on without a channel swap.
"""

import importlib
import logging
from typing import Callable

from .live import LiveSource
from .uri import SourceSpec

log = logging.getLogger(__name__)

DEFAULT_SIZE = (640, 480)
DEFAULT_FPS = 30.0


def import_picamera2(spec: SourceSpec, import_module: Callable = importlib.import_module):
    """The picamera2 module, or SourceError saying how to install it (no retry can fix that)."""
    try:
        return import_module("picamera2")
    except ImportError:
        raise spec.error("picamera2 not installed; on Raspberry Pi OS: sudo apt install "
                         "python3-picamera2 (and create the venv with "
                         "--system-site-packages)") from None


def open_picam(spec: SourceSpec,
               import_module: Callable = importlib.import_module) -> LiveSource:
    if not (spec.target or "0").isdigit():
        raise spec.error("the camera number must be a number, e.g. picam://0")
    picamera2 = import_picamera2(spec, import_module)
    camera = _start_camera(picamera2, spec, int(spec.target or "0"))

    def release() -> None:
        camera.stop()
        camera.close()

    return LiveSource(spec.uri, lambda: camera.capture_array("main"), release)


def _start_camera(picamera2, spec: SourceSpec, number: int):
    width, height = spec.size(DEFAULT_SIZE)
    try:
        camera = picamera2.Picamera2(number)
    except Exception as exc:  # picamera2 raises IndexError/RuntimeError for a missing camera
        raise spec.error("cannot open Raspberry Pi camera %d: %s (is it connected and enabled? "
                         "check: rpicam-hello --list-cameras)" % (number, exc))
    try:
        config = camera.create_video_configuration(
            main={"size": (width, height), "format": "RGB888"},
            controls={"FrameRate": float(spec.fps or DEFAULT_FPS)})
        camera.configure(config)
        camera.start()
    except Exception as exc:  # unsupported size/rate, camera busy
        camera.close()
        raise spec.error("cannot start Raspberry Pi camera %d at %dx%d: %s" % (
            number, width, height, exc))
    log.info("%s: camera %d started at %dx%d", spec.uri, number, width, height)
    return camera
