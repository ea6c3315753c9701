"""Live sources: a reader thread grabs frames as fast as the camera sends them and keeps only
the newest, so inference never works on a picture that is seconds old.

read(timeout) contract for every live source (camera, stream, live synthetic):
  * returns the newest frame not returned before, waiting up to `timeout` seconds
    (default: the source's read_timeout_s);
  * returns None when no new frame came in time (poll again) or after close();
  * raises SourceError once the stream has failed (connection dropped, end of stream,
    device error). A live source never heals itself: wrap it in RecoveringSource for that.
Frames not taken before the next one arrives are dropped and counted in `dropped`.
"""

import logging
import threading
import time
from typing import Callable, Optional

import cv2
import numpy as np

from ..errors import SourceError
from ..types import CAMERA_RUNNING, CAMERA_STOPPED, CameraStatus, Frame

log = logging.getLogger(__name__)

Grab = Callable[[], Optional[np.ndarray]]   # next image, or None when the stream failed/ended


def make_frame(image: np.ndarray, index: int) -> Frame:
    """A read-only BGR uint8 HxWx3 Frame stamped with the capture time."""
    image = to_bgr(image)
    image.setflags(write=False)
    return Frame(image=image, index=index, ts=time.time(), mono=time.monotonic())


def to_bgr(image: np.ndarray) -> np.ndarray:
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


class LiveSource:
    """A live Source fed by `grab` on a daemon thread; `release` runs on that thread at the end.

    The reader thread owns the device: only it calls grab() and release(), so close() never
    waits for a grab stuck on a dead network (it returns after `join_s`; the thread releases
    the device as soon as its grab returns, bounded by the capture's own read timeout).
    """

    live = True

    def __init__(self, uri: str, grab: Grab, release: Callable[[], None],
                 read_timeout_s: float = 5.0, join_s: float = 0.2) -> None:
        self.uri = uri
        self.read_timeout_s = read_timeout_s
        self.dropped = 0            # frames replaced before anyone read them
        self.captured = 0           # frames grabbed so far (next frame index)
        self._grab = grab
        self._release = release
        self._join_s = join_s
        self._cond = threading.Condition()
        self._newest = None         # type: Optional[Frame]
        self._failure = None        # type: Optional[str]
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="source-reader", daemon=True)
        self._thread.start()

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        wait_s = self.read_timeout_s if timeout is None else timeout
        with self._cond:
            self._cond.wait_for(self._has_news, wait_s)
            if self._closed.is_set():
                return None
            frame, self._newest = self._newest, None
            if frame is None and self._failure:
                raise SourceError("%s: %s" % (self.uri, self._failure))
        return frame

    def status(self) -> CameraStatus:
        return CameraStatus(CAMERA_STOPPED if self._closed.is_set() else CAMERA_RUNNING,
                            dropped=self.dropped)

    def close(self) -> None:
        self._closed.set()
        with self._cond:
            self._newest = None
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(self._join_s)

    def _has_news(self) -> bool:
        return self._newest is not None or bool(self._failure) or self._closed.is_set()

    def _run(self) -> None:
        try:
            while not self._closed.is_set():
                image = self._grab()
                if self._closed.is_set():
                    break
                if image is None:
                    self._fail("stream ended or connection lost after %d frames" % self.captured)
                    break
                self._publish(image)
        except Exception as exc:  # any grab failure ends this source; recovery reopens it
            self._fail("capture failed: %s: %s" % (type(exc).__name__, exc))
        finally:
            self._release_quietly()

    def _publish(self, image: np.ndarray) -> None:
        frame = make_frame(image, self.captured)
        with self._cond:
            if self._newest is not None:
                self.dropped += 1
            self._newest = frame
            self.captured += 1
            self._cond.notify_all()

    def _fail(self, why: str) -> None:
        log.debug("%s: %s", self.uri, why)
        with self._cond:
            self._failure = why
            self._cond.notify_all()

    def _release_quietly(self) -> None:
        try:
            self._release()
        except Exception as exc:  # releasing a dead device may fail; nothing left to do
            log.debug("%s: release failed: %s", self.uri, exc)


def capture_grab(capture) -> Grab:
    """grab() for a cv2.VideoCapture: the image, or None when read() fails."""
    def grab() -> Optional[np.ndarray]:
        ok, image = capture.read()
        return image if ok and image is not None else None
    return grab
