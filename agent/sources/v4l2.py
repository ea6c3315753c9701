"""v4l2:// sources: USB and other Video4Linux cameras (v4l2:///dev/video0 or v4l2://0)."""

import logging
import os

import cv2

from .live import LiveSource, capture_grab
from .uri import SourceSpec

log = logging.getLogger(__name__)


def device_path(target: str) -> str:
    """'' -> /dev/video0, '2' -> /dev/video2, '/dev/video1' unchanged."""
    if not target:
        return "/dev/video0"
    return "/dev/video%s" % target if target.isdigit() else target


def open_v4l2(spec: SourceSpec) -> LiveSource:
    path = device_path(spec.target)
    fourcc = spec.options.get("fourcc")
    if fourcc is not None and len(fourcc) != 4:
        raise spec.error("fourcc=%s must be 4 characters, e.g. MJPG or YUYV" % fourcc)
    if not os.path.exists(path):
        raise spec.error("camera device %s not found (is the camera plugged in? list cameras "
                         "with: ls /dev/video* or v4l2-ctl --list-devices)" % path)
    capture = cv2.VideoCapture(path, cv2.CAP_V4L2)
    if not capture.isOpened():
        capture.release()
        raise spec.error("cannot open camera %s (in use by another program, not a capture "
                         "node, or no permission: add the user to the 'video' group)" % path)
    _configure(capture, spec, fourcc)
    log.info("%s: opened %s at %dx%d %.1f fps", spec.uri, path,
             capture.get(cv2.CAP_PROP_FRAME_WIDTH), capture.get(cv2.CAP_PROP_FRAME_HEIGHT),
             capture.get(cv2.CAP_PROP_FPS))
    return LiveSource(spec.uri, capture_grab(capture), capture.release)


def _configure(capture, spec: SourceSpec, fourcc) -> None:
    if fourcc is not None:
        # USB cameras often reach HD frame rates only in MJPG; set it before the size
        capture.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
    if spec.width:
        capture.set(cv2.CAP_PROP_FRAME_WIDTH, spec.width)
    if spec.height:
        capture.set(cv2.CAP_PROP_FRAME_HEIGHT, spec.height)
    if spec.fps:
        capture.set(cv2.CAP_PROP_FPS, spec.fps)
    capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)   # fewer queued frames = less latency
