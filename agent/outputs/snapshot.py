"""Annotated JPEG snapshots of the latest processed frame (the `snapshot` command).

The tap keeps references to the newest frame and its result; drawing and encoding happen only
when someone asks, never on the per-frame path."""

import threading
from typing import Optional, Tuple

import cv2
import numpy as np

from ..types import Frame, FrameResult

_BOX_BGR = (0, 200, 255)


class SnapshotTap:
    """Remembers the newest frame and the newest result (the pipeline's observe hook): the only
    place a frame outlives its trip through inference. At most two frames are held: the newest
    one inferred, and the one paired with the latest result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen = None       # type: Optional[Frame]
        self._latest = None     # type: Optional[Tuple[Frame, FrameResult]]

    def frame_seen(self, frame: Frame) -> None:
        """The inference thread: the newest frame with its pixels (results travel without)."""
        with self._lock:
            self._seen = frame

    def record(self, frame: Frame, result: FrameResult) -> None:
        """The output thread: `frame` may be pixel-less; the pixels come from frame_seen()."""
        with self._lock:
            if frame.image.size == 0:
                if self._seen is None:
                    return
                frame = self._seen  # the same frame, or one a few newer when output lags
            self._latest = (frame, result)

    def latest(self) -> Optional[Tuple[Frame, FrameResult]]:
        with self._lock:
            return self._latest


def annotate(image: np.ndarray, result: FrameResult) -> np.ndarray:
    """A copy of the frame with boxes and labels drawn (frames themselves are read-only)."""
    canvas = image.copy()
    if result.detections is not None:
        found = result.detections
        labels = found.labels or tuple(str(i) for i in found.class_ids)
        for box, score, label in zip(found.boxes, found.scores, labels):
            x1, y1, x2, y2 = (int(round(v)) for v in box)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), _BOX_BGR, 2)
            cv2.putText(canvas, "%s %.2f" % (label, score), (x1, max(12, y1 - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.5, _BOX_BGR, 1, cv2.LINE_AA)
    elif result.classifications is not None and len(result.classifications):
        top = result.classifications
        label = top.labels[0] if top.labels else str(top.class_ids[0])
        cv2.putText(canvas, "%s %.2f" % (label, top.scores[0]), (8, 24),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.7, _BOX_BGR, 2, cv2.LINE_AA)
    return canvas


def encode_jpeg(image: np.ndarray, quality: int = 80) -> bytes:
    ok, data = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed for a %s image" % (image.shape,))
    return data.tobytes()
