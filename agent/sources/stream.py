"""rtsp://, http://, https:// sources: network cameras and streams through OpenCV's FFmpeg.

rtsp:// carries its media over TCP by default (rtsp_transport=tcp): it passes NAT and
firewalls, loses no packets (no smeared frames), and a camera that dies closes the
connection, so the loss is seen at once; rtsp_transport=udp is for cameras that only speak
UDP. OpenCV takes FFmpeg options from $OPENCV_FFMPEG_CAPTURE_OPTIONS at open time only, so
opens that set it are serialized."""

import logging
import os
import threading

import cv2

from .live import LiveSource, capture_grab
from .uri import SourceSpec

log = logging.getLogger(__name__)

DEFAULT_OPEN_TIMEOUT_MS = 10000
DEFAULT_READ_TIMEOUT_MS = 10000
DEFAULT_RTSP_TRANSPORT = "tcp"
FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
_OPEN_LOCK = threading.Lock()


def open_stream(spec: SourceSpec) -> LiveSource:
    """Connect now (SourceError if that fails); frames then come from a reader thread."""
    open_ms = spec.int_option("open_timeout_ms", DEFAULT_OPEN_TIMEOUT_MS, lo=1)
    read_ms = spec.int_option("read_timeout_ms", DEFAULT_READ_TIMEOUT_MS, lo=1)
    if spec.scheme == "rtsp":
        transport = spec.options.get("rtsp_transport", DEFAULT_RTSP_TRANSPORT).lower()
        with _OPEN_LOCK:
            capture = _with_ffmpeg_options({"rtsp_transport": transport},
                                           lambda: ffmpeg_capture(spec.target, open_ms, read_ms))
    else:
        capture = ffmpeg_capture(spec.target, open_ms, read_ms)
    if not capture.isOpened():
        capture.release()
        raise spec.error(
            "cannot connect to the stream within %d ms (check the address, port and "
            "credentials, and that the camera is on and reachable from here; test the "
            "URL with ffprobe)" % open_ms)
    log.info("%s: connected", spec.display_uri)
    return LiveSource(spec.display_uri, capture_grab(capture), capture.release,
                      read_timeout_s=read_ms / 1000.0)


def ffmpeg_capture(url: str, open_ms: int, read_ms: int):
    """VideoCapture on the FFmpeg backend, with open/read timeouts where OpenCV has them
    (4.5.2+); older OpenCV (JetPack 4.6 ships 4.1) falls back to FFmpeg's own defaults."""
    if hasattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC") and hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, open_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, read_ms]
        try:
            return cv2.VideoCapture(url, cv2.CAP_FFMPEG, params)
        except (TypeError, cv2.error) as exc:
            log.debug("VideoCapture with timeouts unsupported here (%s); opening without", exc)
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG)


def _with_ffmpeg_options(options, open_capture):
    """open_capture() with `options` added to the user's own $OPENCV_FFMPEG_CAPTURE_OPTIONS
    ("key;value|key;value"), which is put back afterwards."""
    before = os.environ.get(FFMPEG_OPTIONS_ENV)
    pairs = [p for p in (before or "").split("|") if p and p.split(";", 1)[0] not in options]
    pairs += ["%s;%s" % item for item in sorted(options.items())]
    os.environ[FFMPEG_OPTIONS_ENV] = "|".join(pairs)
    try:
        return open_capture()
    finally:
        if before is None:
            os.environ.pop(FFMPEG_OPTIONS_ENV, None)
        else:
            os.environ[FFMPEG_OPTIONS_ENV] = before
