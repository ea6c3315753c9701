"""synthetic:// sources: generated test pictures, for tests and for trying a pipeline
without a camera.

synthetic://?width=640&height=480&fps=30&pattern=bars|moving_box&frames=N&live=1
Not live by default: frames come as fast as they are read, fps is ignored. live=1 paces
frames at fps on a reader thread like a camera; with frames=N a live one then "dies"
(read raises SourceError), which is how a camera failure is simulated.
"""

import time
from typing import Optional

import numpy as np

from ..types import CAMERA_RUNNING, CAMERA_STOPPED, CameraStatus, Frame
from .live import LiveSource, make_frame
from .uri import SourceSpec

PATTERNS = ("bars", "moving_box")
DEFAULT_SIZE = (640, 480)
DEFAULT_FPS = 30.0

# white, yellow, cyan, green, magenta, red, blue, black (BGR), like SMPTE color bars
_BAR_COLORS = np.array([[255, 255, 255], [0, 255, 255], [255, 255, 0], [0, 255, 0],
                        [255, 0, 255], [0, 0, 255], [255, 0, 0], [0, 0, 0]], dtype=np.uint8)


def render(pattern: str, index: int, width: int, height: int) -> np.ndarray:
    """One BGR picture; a box moves with the index so consecutive frames differ."""
    if pattern == "bars":
        columns = np.arange(width) * len(_BAR_COLORS) // width
        image = np.repeat(_BAR_COLORS[columns][np.newaxis], height, axis=0)
    else:
        image = np.full((height, width, 3), 32, dtype=np.uint8)
    side = max(1, min(width, height) // 4)
    x = (index * max(1, width // 64)) % max(1, width - side)
    y = (height - side) // 2
    image[y:y + side, x:x + side] = 128 if pattern == "bars" else 255
    return image


class SyntheticSource:
    """Not-live synthetic frames: as fast as read, until `frames` (if set)."""

    live = False

    def __init__(self, uri: str, pattern: str, width: int, height: int,
                 frames: Optional[int] = None) -> None:
        self.uri = uri
        self.pattern = pattern
        self.width = width
        self.height = height
        self.frames = frames
        self._index = 0
        self._closed = False

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        if self._closed or (self.frames is not None and self._index >= self.frames):
            return None
        frame = make_frame(render(self.pattern, self._index, self.width, self.height), self._index)
        self._index += 1
        return frame

    def status(self) -> CameraStatus:
        ended = self._closed or (self.frames is not None and self._index >= self.frames)
        return CameraStatus(CAMERA_STOPPED if ended else CAMERA_RUNNING)

    def close(self) -> None:
        self._closed = True


def open_synthetic(spec: SourceSpec):
    pattern = spec.options.get("pattern", "bars")
    if pattern not in PATTERNS:
        raise spec.error("pattern=%s is unknown; use one of: %s" % (pattern, ", ".join(PATTERNS)))
    frames = spec.int_option("frames", -1, lo=1) if "frames" in spec.options else None
    width, height = spec.size(DEFAULT_SIZE)
    if not spec.bool_option("live", False):
        return SyntheticSource(spec.uri, pattern, width, height, frames)
    return LiveSource(spec.uri, _paced_grab(pattern, width, height, spec.fps or DEFAULT_FPS,
                                            frames), lambda: None)


def _paced_grab(pattern: str, width: int, height: int, fps: float, frames: Optional[int]):
    period = 1.0 / fps
    state = {"index": 0, "due": time.monotonic()}

    def grab() -> Optional[np.ndarray]:
        index = state["index"]
        if frames is not None and index >= frames:
            return None
        delay = state["due"] - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        # behind schedule (slow machine): restart the schedule instead of bursting to catch up
        state["due"] = max(state["due"] + period, time.monotonic())
        state["index"] = index + 1
        return render(pattern, index, width, height)
    return grab
