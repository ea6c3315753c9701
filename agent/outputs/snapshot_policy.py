"""Snapshots on detection (config `snapshots:`): an annotated JPEG of the frame on the snapshot
topic when a configured label is detected, at most once per `min_interval_s` per label.

Runs on the pipeline's output thread via the observe hook; the check is a loop over the frame's
detections, and only a frame that triggers is drawn and encoded."""

import logging
import time
from typing import Callable, Dict, List, Optional

from ..config.dashboards_config import SnapshotSettings
from .snapshot import annotate, encode_jpeg
from ..types import Frame, FrameResult

log = logging.getLogger(__name__)


def labels_over(result: FrameResult, min_score: float) -> List[str]:
    """Labels of the frame's detections (or top class) scoring at least min_score."""
    found = result.detections if result.detections is not None else result.classifications
    if found is None or not len(found):
        return []
    labels = found.labels or tuple(str(i) for i in found.class_ids)
    if result.classifications is not None:
        return [labels[0]] if float(found.scores[0]) >= min_score else []
    return [label for label, score in zip(labels, found.scores) if float(score) >= min_score]


class SnapshotOnDetection:
    """publish(jpeg) -> bool (False when it could not go out: the label may try again)."""

    def __init__(self, settings: SnapshotSettings, publish: Callable[[bytes], object],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self._publish = publish
        self._clock = clock
        self._last = {}          # type: Dict[str, float]   label -> monotonic time of its snapshot
        self.sent = 0

    def observe(self, frame: Frame, result: FrameResult) -> Optional[List[str]]:
        """Publish a snapshot if this frame shows a label that is due; the labels it was for."""
        now = self._clock()
        wanted = set(self.settings.labels)
        every = self.settings.min_interval_s
        due = sorted({label for label in labels_over(result, self.settings.min_score)
                      if label in wanted and (label not in self._last or
                                              now - self._last[label] >= every)})
        if not due or frame.image.size == 0:   # no pixels: the tap has seen no frame yet
            return None
        jpeg = encode_jpeg(annotate(frame.image, result), self.settings.quality)
        if self._publish(jpeg) is False:
            log.debug("snapshot for %s not sent (offline)", ", ".join(due))
            return None
        for label in due:
            self._last[label] = now
        self.sent += 1
        log.info("snapshot on detection of %s (frame %d, %d bytes)", ", ".join(due), frame.index,
                 len(jpeg))
        return due
