"""MediaPipe BlazeFace face detectors (face_detection_short_range / full_range .tflite).

Outputs: regressors [1, A, 16] (box x, y, w, h offsets then 6 keypoints, which we ignore) and
classificators [1, A, 1] (logits). The A anchors come from MediaPipe's SsdAnchorsCalculator
with the options of face_detection_{short,full}_range_common.pbtxt (fixed anchor size, so each
anchor is only a centre); boxes decode as in its TensorsToDetectionsCalculator and overlapping
boxes merge by its WEIGHTED non-max suppression.
"""

import math
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ...types import Detections, ImageTransform, TensorSpec
from ..nms import nms, weighted_nms
from .common import (Options, as_float, batch_ok, check_count, first_of_batch, mismatch,
                     to_detections)

# MediaPipe presets: anchor strides, extra interpolated anchor per layer, min_score_thresh.
RANGES = {
    "short": {"strides": (8, 16, 16, 16), "interpolated": 1.0, "score_threshold": 0.5},  # 128x128
    "full": {"strides": (4,), "interpolated": 0.0, "score_threshold": 0.6},              # 192x192
}  # type: Dict[str, dict]
ANCHOR_OFFSET = 0.5
EXPECTS = "2 outputs: regressors [1, A, 16] and classificators [1, A, 1]"


def ssd_anchor_centres(input_hw: Tuple[int, int], strides: Sequence[int],
                       interpolated_scale_aspect_ratio: float) -> np.ndarray:
    """[A, 2] anchor centres (x, y) in 0..1, in the order the model emits its boxes.

    Consecutive layers with the same stride share one feature map; each layer adds one anchor
    per cell for its aspect ratio (1.0) and one more when the interpolated ratio is set.
    """
    height, width = input_hw
    per_layer = 1 + (1 if interpolated_scale_aspect_ratio > 0.0 else 0)
    groups = []  # type: List[np.ndarray]
    layer = 0
    while layer < len(strides):
        stride, repeats = strides[layer], 0
        while layer < len(strides) and strides[layer] == stride:
            repeats += per_layer
            layer += 1
        rows, cols = int(math.ceil(height / stride)), int(math.ceil(width / stride))
        ys, xs = np.meshgrid((np.arange(rows) + ANCHOR_OFFSET) / rows,
                             (np.arange(cols) + ANCHOR_OFFSET) / cols, indexing="ij")
        centres = np.stack([xs.ravel(), ys.ravel()], axis=1)
        groups.append(np.repeat(centres, repeats, axis=0))
    return np.concatenate(groups).astype(np.float32)


class BlazeFaceDecoder:
    """Faces (class 0) from a BlazeFace model; the anchors are built once."""

    KEYS = ("range", "score_threshold", "iou_threshold", "nms", "max_detections",
            "score_clipping_thresh")

    name = "blazeface"

    def __init__(self, output_specs: List[TensorSpec], regressors_index: int,
                 input_hw: Tuple[int, int], anchors: np.ndarray, score_threshold: float,
                 iou_threshold: float = 0.3, weighted: bool = True, max_detections: int = 100,
                 score_clipping_thresh: float = 100.0) -> None:
        self.output_specs = output_specs
        self.regressors_index = regressors_index
        self.input_hw = input_hw
        self.anchors = anchors
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.weighted = weighted
        self.max_detections = max_detections
        self.score_clipping_thresh = score_clipping_thresh

    @classmethod
    def from_dict(cls, cfg: Mapping, path: str, input_spec: TensorSpec,
                  output_specs: List[TensorSpec]) -> "BlazeFaceDecoder":
        opts = Options(cfg, path, cls.KEYS)
        regressors_index, num_boxes = _identify(output_specs)
        input_hw = input_spec.hw
        if min(input_hw) <= 0:
            raise mismatch(cls.name, "a fixed input size (128x128 or 192x192)", [input_spec])
        wanted = opts.choice("range", ("auto", "short", "full"), "auto")
        range_name = _pick_range(wanted, input_hw, num_boxes, output_specs)
        preset = RANGES[range_name]
        anchors = ssd_anchor_centres(input_hw, preset["strides"], preset["interpolated"])
        return cls(output_specs, regressors_index, input_hw, anchors,
                   score_threshold=opts.fraction("score_threshold", preset["score_threshold"]),
                   iou_threshold=opts.fraction("iou_threshold", 0.3),
                   weighted=opts.choice("nms", ("weighted", "hard"), "weighted") == "weighted",
                   max_detections=opts.count("max_detections", 100),
                   score_clipping_thresh=opts.number("score_clipping_thresh", 100.0, lo=0.0))

    def __call__(self, outputs: List[np.ndarray], transform: ImageTransform) -> Detections:
        check_count(self.name, outputs, self.output_specs)
        r_i = self.regressors_index
        raw_boxes = first_of_batch(as_float(outputs[r_i], self.output_specs[r_i]), self.name)
        raw_scores = first_of_batch(as_float(outputs[1 - r_i], self.output_specs[1 - r_i]),
                                    self.name).reshape(-1)
        # float64 so that the sigmoid of a clipped -100 logit is 0, not an overflow warning.
        logits = np.clip(raw_scores.astype(np.float64), -self.score_clipping_thresh,
                         self.score_clipping_thresh)
        scores = 1.0 / (1.0 + np.exp(-logits))
        picked = np.flatnonzero(scores >= self.score_threshold)
        if picked.size == 0:
            return Detections.empty()
        boxes = self._decode_boxes(raw_boxes[picked], self.anchors[picked])
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        boxes, scores = boxes[valid], scores[picked][valid]
        if self.weighted:
            boxes, scores = weighted_nms(boxes, scores, self.iou_threshold, self.max_detections)
        else:
            keep = nms(boxes, scores, self.iou_threshold, max_detections=self.max_detections)
            boxes, scores = boxes[keep], scores[keep]
        return to_detections(boxes, scores, np.zeros(len(scores), np.int64), transform)

    def _decode_boxes(self, raw: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """[x1, y1, x2, y2] in model-input pixels.

        MediaPipe: centre = raw / scale * anchor_size + anchor_centre, size = raw / scale *
        anchor_size, with scale = input size and anchor_size = 1, all in 0..1 units.
        """
        height, width = self.input_hw
        size = np.array([width, height], np.float64)
        centre = raw[:, 0:2] / size + anchors
        half = raw[:, 2:4] / size / 2.0
        return np.concatenate([centre - half, centre + half], axis=1) * np.tile(size, 2)


def _identify(specs: List[TensorSpec]) -> Tuple[int, int]:
    """(index of the regressors output, number of boxes A)."""
    if len(specs) != 2 or any(len(s.shape) != 3 or not batch_ok(s) for s in specs):
        raise mismatch("blazeface", EXPECTS, specs)
    last = [s.shape[2] for s in specs]
    if sorted(last) != [1, max(last)] or max(last) < 4:
        raise mismatch("blazeface", EXPECTS, specs)
    regressors = last.index(max(last))
    num_boxes = specs[regressors].shape[1]
    if specs[1 - regressors].shape[1] != num_boxes:
        raise mismatch("blazeface", EXPECTS, specs, "both must have the same number of anchors")
    return regressors, num_boxes


def _pick_range(wanted: str, input_hw: Tuple[int, int], num_boxes: int,
                specs: List[TensorSpec]) -> str:
    counts = {name: len(ssd_anchor_centres(input_hw, p["strides"], p["interpolated"]))
              for name, p in RANGES.items()}
    names = [wanted] if wanted != "auto" else ["short", "full"]
    for name in names:
        if counts[name] == num_boxes:
            return name
    raise mismatch("blazeface", "%s boxes for a %dx%d input (%s)" % (
        " or ".join(str(counts[n]) for n in names), input_hw[1], input_hw[0],
        ", ".join("range %s" % n for n in names)), specs,
        "set decoder.range to the model's variant (short: 128x128, full: 192x192)")
