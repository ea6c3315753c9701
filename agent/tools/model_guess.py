"""Which task and decoder a model's outputs fit, its class count, and the preprocess it most
likely expects - the guesses `edgeagent inspect` prints and writes into a pipeline.

Shapes decide, metadata (Ultralytics' `names`, `imgsz`) confirms. YOLOv5 and YOLOv8 heads differ
by anchors per cell: v8 has one box per cell of the stride-8/16/32 grids, v5 three, so the box
count against the input size tells them apart even when the class count would fit both."""

import math
from dataclasses import dataclass, field  # novm: the dataclasses backport serves 3.6
from typing import Dict, List, Optional, Sequence, Tuple

from .model_info import ModelInfo, TensorInfo

DEFAULT_DYNAMIC_SIZE = 640
YOLO_STRIDES = (8, 16, 32)
BLAZEFACE_ANCHORS = {896: "short", 2304: "full"}   # 128x128 / 192x192 MediaPipe models
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Guess:
    task: str                                 # detect | classify | unknown
    decoder: str                              # a decoder type, or "" when none fits
    reason: str                               # why, in one sentence
    num_classes: Optional[int] = None
    input_size: Optional[Tuple[int, int]] = None   # (width, height) to set when input is dynamic
    preprocess: Dict = field(default_factory=dict)
    decoder_cfg: Dict = field(default_factory=dict)
    checks: List[str] = field(default_factory=list)   # what a person should confirm


def yolo_cells(width: int, height: int, strides: Sequence[int] = YOLO_STRIDES) -> int:
    return sum(int(math.ceil(height / float(s))) * int(math.ceil(width / float(s)))
               for s in strides)


def guess(info: ModelInfo) -> Guess:
    """The best guess for a model; task "unknown" with the reason when nothing fits."""
    if len(info.inputs) != 1:
        return Guess(UNKNOWN, "", "the model has %d inputs; edgeagent feeds one image input"
                     % len(info.inputs))
    image = info.inputs[0]
    if len(image.shape) != 4:
        return Guess(UNKNOWN, "", "input %r has shape %s, not an image batch [N,C,H,W] or "
                     "[N,H,W,C]" % (image.name, _dims(image.shape)))
    width, height, dynamic = _input_size(info, image)
    outputs = info.outputs
    for rule in (_classify, _yolo, _ssd, _blazeface):
        found = rule(info, outputs, width, height)
        if found is not None:
            return _finish(found, info, image, width, height, dynamic)
    return Guess(UNKNOWN, "", "outputs %s fit none of the decoders (classify, yolov5, yolov8, "
                 "ssd, blazeface); export the raw head without NMS, or see docs/models.md" %
                 ", ".join("%s %s" % (o.name, _dims(o.shape)) for o in outputs))


def _input_size(info: ModelInfo, image: TensorInfo) -> Tuple[int, int, bool]:
    spec = image.spec()
    height, width = spec.hw
    if height > 0 and width > 0:
        return width, height, False
    trained = info.trained_size
    if trained:
        return trained[0], trained[1], True
    return DEFAULT_DYNAMIC_SIZE, DEFAULT_DYNAMIC_SIZE, True


def _dims(shape) -> str:
    return "[%s]" % ", ".join(str(d) for d in shape)


def _fixed(dim) -> Optional[int]:
    return dim if isinstance(dim, int) and dim >= 0 else None


def _classify(info: ModelInfo, outputs: List[TensorInfo], width: int, height: int):
    if len(outputs) != 1:
        return None
    shape = outputs[0].shape
    if len(shape) < 2 or _fixed(shape[0]) not in (None, 1):
        return None
    sizes = [_fixed(d) for d in shape[1:]]
    big = [d for d in sizes if d != 1]
    if len(big) != 1 or big[0] is None or big[0] < 2:
        return None
    return Guess("classify", "classify", "one output %s: one score per class" % _dims(shape),
                 num_classes=big[0], decoder_cfg={"top_k": 5})


def _yolo(info: ModelInfo, outputs: List[TensorInfo], width: int, height: int):
    if len(outputs) != 1 or len(outputs[0].shape) != 3:
        return None
    shape = outputs[0].shape
    a, b = _fixed(shape[1]), _fixed(shape[2])
    names = len(info.class_names)
    cells = yolo_cells(width, height)
    if a is not None and b is not None:
        rows, boxes, rows_first = min(a, b), max(a, b), a <= b
    elif a is not None:
        rows, boxes, rows_first = a, None, True
    elif b is not None:
        rows, boxes, rows_first = b, None, False
    else:
        return None
    if rows < 5 or rows > 4096:
        return None
    if rows in (6, 7) and boxes is not None and boxes <= 300 and boxes not in (cells, 3 * cells):
        return None          # [1, 300, 6]: boxes after NMS inside the model, not a raw head
    why = "one output %s" % _dims(shape)
    if boxes == cells:
        kind, why = "yolov8", why + ": %d boxes = one per cell of the %dx%d grids" % (cells, width,
                                                                                     height)
    elif boxes == 3 * cells:
        kind, why = "yolov5", why + ": %d boxes = 3 anchors per cell at %dx%d" % (boxes, width,
                                                                                  height)
    elif names and names == rows - 4:
        kind, why = "yolov8", why + ": 4 box values + %d classes (the model's names)" % names
    elif names and names == rows - 5:
        kind, why = "yolov5", why + ": 4 box values + objectness + %d classes" % names
    elif rows_first:
        kind, why = "yolov8", why + ": rows first, as Ultralytics YOLOv8/v11 exports write"
    else:
        kind, why = "yolov5", why + ": boxes first, as YOLOv5 exports write"
    classes = rows - (4 if kind == "yolov8" else 5)
    if classes < 1:
        return None
    return Guess("detect", kind, why, num_classes=classes,
                 decoder_cfg={"score_threshold": 0.25, "iou_threshold": 0.45,
                              "max_detections": 100})


def _ssd(info: ModelInfo, outputs: List[TensorInfo], width: int, height: int):
    if len(outputs) != 4:
        return None
    ranks = sorted(len(o.shape) for o in outputs)
    has_boxes = any(len(o.shape) == 3 and _fixed(o.shape[2]) == 4 for o in outputs)
    if ranks != [1, 2, 2, 3] or not has_boxes:
        return None
    return Guess("detect", "ssd", "4 outputs boxes [1,N,4], classes, scores, count: an SSD with "
                 "its post-processing (NMS) inside the model",
                 decoder_cfg={"score_threshold": 0.5, "max_detections": 100})


def _blazeface(info: ModelInfo, outputs: List[TensorInfo], width: int, height: int):
    if len(outputs) != 2 or any(len(o.shape) != 3 for o in outputs):
        return None
    by_depth = sorted(outputs, key=lambda o: _fixed(o.shape[2]) or 0)
    scores, boxes = by_depth
    anchors = _fixed(boxes.shape[1])
    depth = _fixed(boxes.shape[2]) or 0
    if _fixed(scores.shape[2]) != 1 or anchors is None or anchors != _fixed(scores.shape[1]) \
            or depth < 4 or depth % 2:
        return None
    cfg = {"score_threshold": 0.5, "iou_threshold": 0.3}
    preset = BLAZEFACE_ANCHORS.get(anchors)
    why = "2 outputs %s and %s: box regressors and scores over %d anchors" % (
        _dims(boxes.shape), _dims(scores.shape), anchors)
    checks = []
    if preset:
        cfg["range"] = preset
        why += " (MediaPipe %s range)" % preset
    else:
        checks.append("%d anchors match no MediaPipe preset (896 short, 2304 full range): the "
                      "blazeface decoder will refuse the model unless its anchors fit" % anchors)
    return Guess("detect", "blazeface", why, num_classes=1, decoder_cfg=cfg, checks=checks)


def _finish(found: Guess, info: ModelInfo, image: TensorInfo, width: int, height: int,
            dynamic: bool) -> Guess:
    checks = list(found.checks)
    names = info.class_names
    if names and found.num_classes and len(names) != found.num_classes:
        checks.append("the model's names metadata lists %d classes, the outputs say %d" % (
            len(names), found.num_classes))
    if dynamic:
        checks.append("input %r is dynamic %s: input_size %dx%d %s" % (
            image.name, _dims(image.shape), width, height,
            "is the size in the model's imgsz metadata" if info.trained_size else
            "is a default - set the size the model was trained at"))
    return Guess(found.task, found.decoder, found.reason, found.num_classes,
                 (width, height) if dynamic else None, _preprocess(found, image), found.decoder_cfg,
                 checks)


def _preprocess(found: Guess, image: TensorInfo) -> Dict:
    integer_input = image.dtype in ("uint8", "int8")
    if found.decoder in ("yolov8", "yolov5"):
        return {"resize": "letterbox", "color": "rgb", "mean": [0, 0, 0],
                "std": [1, 1, 1] if integer_input else [255, 255, 255], "pad_value": 114}
    if found.decoder == "blazeface":
        return {"resize": "letterbox", "color": "rgb", "mean": [127.5, 127.5, 127.5],
                "std": [127.5, 127.5, 127.5], "pad_value": 0}
    if integer_input:
        return {"resize": "stretch", "color": "rgb", "mean": [0, 0, 0], "std": [1, 1, 1]}
    if found.decoder == "ssd":
        return {"resize": "stretch", "color": "rgb", "mean": [127.5, 127.5, 127.5],
                "std": [127.5, 127.5, 127.5]}
    # torchvision's ImageNet statistics, in 0..255 pixels
    return {"resize": "stretch", "color": "rgb", "mean": [123.675, 116.28, 103.53],
            "std": [58.395, 57.12, 57.375]}
