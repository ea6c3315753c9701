"""Non-maximum suppression, vectorized in numpy: one loop step per kept box, never per pair.

Boxes are [x1, y1, x2, y2]. A box is suppressed when its IoU with a better box is strictly
greater than the threshold (the convention of torchvision, ultralytics and MediaPipe).
"""

from typing import Optional, Tuple

import numpy as np


def iou_one_to_many(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of ``boxes``; 0 where the union is empty."""
    ix1 = np.maximum(box[0], boxes[:, 0])
    iy1 = np.maximum(box[1], boxes[:, 1])
    ix2 = np.minimum(box[2], boxes[:, 2])
    iy2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = (np.clip(boxes[:, 2] - boxes[:, 0], 0, None) *
             np.clip(boxes[:, 3] - boxes[:, 1], 0, None))
    union = area + areas - inter
    out = np.zeros(len(boxes), dtype=np.float64)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def _by_score(scores: np.ndarray) -> np.ndarray:
    # Stable (mergesort: kind="stable" needs numpy 1.15), so ties keep their input order.
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="mergesort")


# Up to this many candidates the whole IoU matrix is cheaper than one round of numpy calls
# per kept box (measured: 60 boxes 0.09 ms vs 1.3 ms); past ~300 its n*n cost loses.
MATRIX_LIMIT = 256


def pairwise_iou(boxes: np.ndarray) -> np.ndarray:
    """[n, n] IoU of every box with every other."""
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    iw = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    inter = iw * ih
    areas = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = areas[:, None] + areas[None] - inter
    out = np.zeros_like(inter)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
        class_ids: Optional[np.ndarray] = None, max_detections: Optional[int] = None) -> np.ndarray:
    """Indices of the kept boxes, best score first.

    With ``class_ids`` boxes only suppress boxes of their own class: each class is shifted to
    its own far-away region, so one pass over all boxes does every class at once.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if len(boxes) == 0:
        return np.zeros((0,), dtype=np.int64)
    if class_ids is not None:
        span = float(boxes.max() - boxes.min()) + 1.0
        boxes = boxes + (np.asarray(class_ids, dtype=np.float64) * span)[:, None]
    order = _by_score(scores)
    if len(order) <= MATRIX_LIMIT:
        keep = _greedy_with_matrix(boxes[order], iou_threshold, max_detections)
        return order[keep]
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        if max_detections is not None and len(keep) >= max_detections:
            break
        rest = order[1:]
        order = rest[iou_one_to_many(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _greedy_with_matrix(sorted_boxes: np.ndarray, iou_threshold: float,
                        max_detections: Optional[int]) -> np.ndarray:
    overlaps = pairwise_iou(sorted_boxes) > iou_threshold
    suppressed = np.zeros(len(sorted_boxes), dtype=bool)
    keep = []
    for i in range(len(sorted_boxes)):
        if suppressed[i]:
            continue
        keep.append(i)
        if max_detections is not None and len(keep) >= max_detections:
            break
        suppressed |= overlaps[i]
    return np.asarray(keep, dtype=np.int64)


def weighted_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
                 max_detections: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """MediaPipe's WEIGHTED suppression: (boxes, scores), best first.

    The best remaining box gathers every remaining box overlapping it by more than the
    threshold (itself included); the output box is their score-weighted mean, with the best
    box's score. It is steadier frame to frame than plain NMS.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = _by_score(scores)
    out_boxes, out_scores = [], []
    while order.size and (max_detections is None or len(out_boxes) < max_detections):
        best = order[0]
        cluster = iou_one_to_many(boxes[best], boxes[order]) > iou_threshold
        cluster[0] = True       # a degenerate best box still stands for itself
        members = order[cluster]
        weights = scores[members]
        total = weights.sum()
        if total > 0:
            out_boxes.append((boxes[members] * weights[:, None]).sum(axis=0) / total)
        else:
            out_boxes.append(boxes[best])
        out_scores.append(scores[best])
        order = order[~cluster]
    if not out_boxes:
        return np.zeros((0, 4), dtype=np.float64), np.zeros((0,), dtype=np.float64)
    return np.asarray(out_boxes), np.asarray(out_scores)
