"""The part YOLOv5 and YOLOv8 heads share: one output of N rows of [cx, cy, w, h, ...scores],
stored either as [1, rows, N] or [1, N, rows], boxes in model-input pixels (or 0..1, as the
TFLite exports write them). Subclasses say how many box values precede the class scores and
how a row's class scores are computed."""

from typing import List, Mapping, Optional, Tuple

import numpy as np

from ...errors import ModelError
from ...types import Detections, ImageTransform, TensorSpec
from ..nms import nms
from .common import (Options, as_float, batch_ok, check_count, first_of_batch, mismatch,
                     to_detections, xywh_to_xyxy)

KEYS = ("score_threshold", "iou_threshold", "max_detections", "agnostic_nms", "num_classes",
        "normalized_boxes")


class YoloDecoder:
    """Base of the YOLO decoders; ``head`` is the number of values before the class scores."""

    name = "yolo"
    KEYS = KEYS
    head = 4
    layout_hint = "[1, 4+C, N]"

    def __init__(self, output_spec: TensorSpec, input_hw: Tuple[int, int],
                 score_threshold: float = 0.25, iou_threshold: float = 0.45,
                 max_detections: int = 100, agnostic_nms: bool = False,
                 num_classes: Optional[int] = None, normalized_boxes: str = "auto") -> None:
        self.output_spec = output_spec
        self.input_hw = input_hw
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.max_detections = max_detections
        self.agnostic_nms = agnostic_nms
        self.num_classes = num_classes
        self.normalized_boxes = normalized_boxes

    @classmethod
    def from_dict(cls, cfg: Mapping, path: str, input_spec: TensorSpec,
                  output_specs: List[TensorSpec]) -> "YoloDecoder":
        opts = Options(cfg, path, cls.KEYS)
        spec = cls._the_output(output_specs)
        return cls(spec, input_spec.hw,
                   score_threshold=opts.fraction("score_threshold", 0.25),
                   iou_threshold=opts.fraction("iou_threshold", 0.45),
                   max_detections=opts.count("max_detections", 100),
                   agnostic_nms=opts.flag("agnostic_nms", False),
                   num_classes=opts.count("num_classes", None),
                   normalized_boxes=opts.choice("normalized_boxes", ("auto", True, False), "auto"))

    @classmethod
    def _the_output(cls, specs: List[TensorSpec]) -> TensorSpec:
        expects = "one output %s (or transposed)" % cls.layout_hint
        if len(specs) != 1:
            raise mismatch(cls.name, expects, specs, "export the model with its detection head "
                           "as a single output (no NMS inside the model)")
        spec = specs[0]
        if len(spec.shape) != 3 or not batch_ok(spec):
            raise mismatch(cls.name, expects, specs)
        dims = spec.shape[1:]
        if -1 not in dims and min(dims) < cls.head + 1:
            raise mismatch(cls.name, expects, specs, "rows need %d box values and at least one "
                           "class score" % cls.head)
        return spec

    def __call__(self, outputs: List[np.ndarray], transform: ImageTransform) -> Detections:
        check_count(self.name, outputs, [self.output_spec])
        rows = self._rows_first(first_of_batch(as_float(outputs[0], self.output_spec), self.name))
        candidates, scores, class_ids = self.class_scores(rows)
        if candidates.size == 0:
            return Detections.empty()
        box_rows = rows[:4, candidates]
        if self._normalized(rows):
            height, width = self.input_hw
            box_rows = box_rows * np.array([[width], [height], [width], [height]], np.float32)
        boxes = xywh_to_xyxy(box_rows[0], box_rows[1], box_rows[2], box_rows[3])
        keep = nms(boxes, scores, self.iou_threshold,
                   None if self.agnostic_nms else class_ids, self.max_detections)
        return to_detections(boxes[keep], scores[keep], class_ids[keep], transform)

    def class_scores(self, rows: np.ndarray) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(column indices above the threshold, their best score, their class id)."""
        raise NotImplementedError

    def _rows_first(self, array: np.ndarray) -> np.ndarray:
        """The output as [head+C, N] (a view, no copy): one row per value, one column per box."""
        if array.ndim != 2:
            raise mismatch(self.name, "one output %s" % self.layout_hint, [self.output_spec])
        a, b = array.shape
        if self.num_classes is not None:
            rows = self.head + self.num_classes
            if rows not in (a, b):
                raise ModelError("decoder %s: num_classes %d means rows of %d values, but the "
                                 "output is %s; fix decoder.num_classes" % (
                                     self.name, self.num_classes, rows, list(array.shape)))
            return array if a == rows else array.T
        # Without num_classes: boxes (N) far outnumber values per box (head + C).
        return array if a <= b else array.T

    def _normalized(self, rows: np.ndarray) -> bool:
        if self.normalized_boxes != "auto":
            return bool(self.normalized_boxes)
        # Box centres span the whole input: pixel outputs reach far beyond 1, 0..1 ones do not.
        return bool(rows.shape[1] > 0 and float(np.abs(rows[:2]).max()) <= 2.0)
