"""file:// sources: every frame of a video file, in order, optionally looping forever.

A looping file that cannot be reopened (deleted, moved, unreadable) is a SourceError, not an
end: the agent exits 5 with the file named, instead of a silent clean stop."""

import logging
import os
from typing import Optional

import cv2

from ..types import CAMERA_RUNNING, CAMERA_STOPPED, CameraStatus, Frame
from .live import make_frame
from .uri import SourceSpec

log = logging.getLogger(__name__)


class FileSource:
    """Reads a video file with OpenCV. Frame index = frame number, counting on across loops."""

    live = False

    def __init__(self, spec: SourceSpec) -> None:
        self.uri = spec.uri
        self.path = spec.target
        self.loop = spec.loop
        self.loops = 0               # how many times the file restarted
        self._index = 0
        self._frames_this_pass = 0
        self._spec = spec
        self._capture = _open_video(spec)
        self._pending = _first_image(self._capture, spec)   # proves OpenCV can decode it

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next frame, or None at the end of the file (never when looping)."""
        if self._capture is None:
            return None
        image, self._pending = self._pending, None
        if image is None:
            image = self._next_image()
        if image is None:
            return None
        frame = make_frame(image, self._index)
        self._index += 1
        self._frames_this_pass += 1
        return frame

    def status(self) -> CameraStatus:
        return CameraStatus(CAMERA_STOPPED if self._capture is None else CAMERA_RUNNING)

    def status(self) -> CameraStatus:
        return CameraStatus(CAMERA_STOPPED if self._capture is None else CAMERA_RUNNING)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None

    def _next_image(self):
        ok, image = self._capture.read()
        if ok:
            return image
        if not self.loop or self._frames_this_pass == 0:
            return None
        # reopening is more reliable than seeking to frame 0 for every codec/container
        self._capture.release()
        self._capture = None
        self._capture = _open_video(self._spec, "cannot loop: ")
        self._frames_this_pass = 0
        self.loops += 1
        log.debug("%s: looping (pass %d)", self.uri, self.loops + 1)
        ok, image = self._capture.read()
        if not ok or image is None:
            raise self._spec.error("cannot loop: " + _undecodable(self.path))
        return image


def _open_video(spec: SourceSpec, context: str = ""):
    if not os.path.isfile(spec.target):
        what = "a directory; use images://%s for a folder of pictures" % spec.target \
            if os.path.isdir(spec.target) else "file missing"
        raise spec.error("%scannot open video (%s)" % (context, what))
    capture = cv2.VideoCapture(spec.target)
    if not capture.isOpened():
        raise spec.error(context + _undecodable(spec.target))
    return capture


def _first_image(capture, spec: SourceSpec):
    ok, image = capture.read()
    if not ok or image is None:
        capture.release()
        raise spec.error(_undecodable(spec.target))
    return image


def _undecodable(path: str) -> str:
    return ("cannot open video (OpenCV cannot decode it; check that %s is a complete video, "
            "or convert it: ffmpeg -i %s -c:v mjpeg out.avi)" % (path, path))
