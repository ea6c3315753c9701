"""YOLOv5/v7 head: [1, N, 5+C], rows cx, cy, w, h, objectness, then one score per class."""

from typing import Tuple

import numpy as np

from .yolo_common import YoloDecoder


class YoloV5Decoder(YoloDecoder):
    """Score of a box = objectness x its best class score."""

    name = "yolov5"
    head = 5
    layout_hint = "[1, N, 5+C]"

    def class_scores(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        objectness = rows[4]
        # obj * cls <= obj, so boxes whose objectness misses the threshold cannot pass.
        maybe = np.flatnonzero(objectness > self.score_threshold)
        combined = rows[5:, maybe] * objectness[maybe]
        class_ids = combined.argmax(axis=0)
        best = combined[class_ids, np.arange(len(maybe))]
        passed = best > self.score_threshold
        return maybe[passed], best[passed], class_ids[passed]
