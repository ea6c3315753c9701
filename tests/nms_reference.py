"""Loop references for NMS and the letterbox back-transform, shared by the NMS and decoder tests:
straightforward, slow, obviously right."""

import numpy as np


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, threshold, classes=None, limit=None):
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        rivals = [k for k in kept if classes is None or classes[k] == classes[i]]
        if all(iou(boxes[i], boxes[k]) <= threshold for k in rivals):
            kept.append(i)
        if limit and len(kept) == limit:
            break
    return kept


def reference_weighted_nms(boxes, scores, threshold):
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while remaining:
        best = remaining[0]
        cluster = [i for i in remaining if iou(boxes[i], boxes[best]) > threshold]
        total = sum(scores[i] for i in cluster)
        merged = [sum(scores[i] * boxes[i][c] for i in cluster) / total for c in range(4)]
        out.append((merged, scores[best]))
        remaining = [i for i in remaining if i not in cluster]
    return out


def to_source(box, t):
    x1, y1, x2, y2 = box
    return [min(max((x1 - t.pad_x) / t.scale_x, 0), t.src_width),
            min(max((y1 - t.pad_y) / t.scale_y, 0), t.src_height),
            min(max((x2 - t.pad_x) / t.scale_x, 0), t.src_width),
            min(max((y2 - t.pad_y) / t.scale_y, 0), t.src_height)]


def random_boxes(rng, n, extent=200.0):
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(10, 80, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)
