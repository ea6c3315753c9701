"""YOLOv8/v11 head (ultralytics export without NMS): [1, 4+C, N], rows cx, cy, w, h, then one
score per class; there is no objectness."""

from typing import Tuple

import numpy as np

from .yolo_common import YoloDecoder


class YoloV8Decoder(YoloDecoder):
    """Score of a box = its best class score."""

    name = "yolov8"
    head = 4
    layout_hint = "[1, 4+C, N]"

    def class_scores(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        classes = rows[4:]
        best = classes.max(axis=0)
        candidates = np.flatnonzero(best > self.score_threshold)
        # argmax only over the few columns that passed, not all N.
        class_ids = classes[:, candidates].argmax(axis=0)
        return candidates, best[candidates], class_ids
