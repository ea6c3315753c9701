"""Frame sources chosen by URI.

    file:///path/video.mp4 or a plain path  every frame of a video (loop=1 repeats)
    images:///dir                           jpg/png/bmp files of a folder, by name
    rtsp:// http:// https://                network cameras/streams (OpenCV FFmpeg backend)
    v4l2:///dev/video0                      USB/V4L2 camera
    csi://0                                 Jetson CSI camera (nvarguscamerasrc, GStreamer)
    picam://0                               Raspberry Pi camera (picamera2)
    synthetic://?pattern=bars               generated test pictures

width/height/fps/loop arguments come from the device profile; the URI query wins.
Files, folders and not-live synthetic sources are not live: read() returns every frame in
order, then None at the end. Live sources follow the contract in agent/sources/live.py:
read(timeout) returns the newest frame or None when none came in time, raises SourceError
when the stream failed; wrap them with open_recovering() to survive camera failures.
"""

from typing import Optional

from ..types import Source
from .csi import check_gstreamer, open_csi
from .file import FileSource
from .images import ImageDirSource
from .picam import import_picamera2, open_picam
from ..backoff import Backoff
from ..types import CAMERA_LOST, CAMERA_RUNNING, CAMERA_STOPPED
from .recovery import RUNNING, STOPPED, RecoveringSource
from .stream import open_stream
from .synthetic import open_synthetic
from .uri import STREAM_SCHEMES, SUPPORTED_SCHEMES, SourceSpec, parse_uri
from .v4l2 import open_v4l2

__all__ = ["open_source", "open_recovering", "check_source", "is_live", "parse_uri", "SourceSpec",
           "RecoveringSource", "Backoff", "RUNNING", "CAMERA_LOST", "STOPPED",
           "CAMERA_RUNNING", "CAMERA_STOPPED",
           "SUPPORTED_SCHEMES"]

_OPENERS = {
    "file": FileSource,
    "images": ImageDirSource,
    "rtsp": open_stream,
    "http": open_stream,
    "https": open_stream,
    "v4l2": open_v4l2,
    "csi": open_csi,
    "picam": open_picam,
    "synthetic": open_synthetic,
}


def open_source(uri: str, width: Optional[int] = None, height: Optional[int] = None,
                fps: Optional[float] = None, loop: bool = False) -> Source:
    """Open the source a URI names, now; SourceError says what is wrong and how to fix it."""
    return open_spec(parse_uri(uri, width, height, fps, loop))


def open_spec(spec: SourceSpec) -> Source:
    return _OPENERS[spec.scheme](spec)


def is_live(spec: SourceSpec) -> bool:
    if spec.scheme == "synthetic":
        return spec.bool_option("live", False)
    return spec.scheme in STREAM_SCHEMES or spec.scheme in ("v4l2", "csi", "picam")


def open_recovering(uri: str, width: Optional[int] = None, height: Optional[int] = None,
                    fps: Optional[float] = None, loop: bool = False,
                    stall_timeout_s: float = 5.0, **recovery_options) -> Source:
    """A live source wrapped in RecoveringSource; other sources opened as they are.

    Mistakes no retry can fix (bad URI, unknown key, OpenCV without GStreamer, picamera2
    missing, missing file) raise SourceError now. A live camera that cannot be opened yet
    does not: the source starts "camera_lost" and keeps trying."""
    spec = parse_uri(uri, width, height, fps, loop)
    if not is_live(spec):
        return open_spec(spec)
    if spec.scheme == "csi":
        check_gstreamer(spec)
    elif spec.scheme == "picam":
        import_picamera2(spec)
    return RecoveringSource(lambda: open_spec(spec), stall_timeout_s, uri=spec.display_uri,
                            **recovery_options)


def check_source(uri: str, width: Optional[int] = None, height: Optional[int] = None,
                 fps: Optional[float] = None, loop: bool = False) -> None:
    """What open_recovering would refuse, without opening a camera (for `validate`): the URI's
    syntax, scheme and keys; a file or folder is opened and closed (it must exist and decode,
    every picture of an images:// folder is read once);
    csi needs OpenCV with GStreamer, picam needs picamera2. A live camera that is off is not
    an error: `run` waits for it."""
    spec = parse_uri(uri, width, height, fps, loop)
    if not is_live(spec):
        source = open_spec(spec)
        try:
            for _ in getattr(source, "paths", ()):   # images://: every picture must decode
                source.read()
        finally:
            source.close()
    elif spec.scheme == "csi":
        check_gstreamer(spec)
    elif spec.scheme == "picam":
        import_picamera2(spec)
