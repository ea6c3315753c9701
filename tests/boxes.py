"""Reference box arithmetic for tests, written out plainly and independent of agent/ (the
tests compare the agent's decoders against it)."""


def box_iou(a, b):
    """Intersection over union of two [x1, y1, x2, y2] boxes; 0.0 when they do not overlap."""
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)
