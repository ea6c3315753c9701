"""SSD models with the TFLite_Detection_PostProcess op: NMS already ran inside the model.

Outputs: boxes [1, N, 4] (ymin, xmin, ymax, xmax, 0..1 of the model input), classes [1, N],
scores [1, N], count [1]. Exporters order and name them differently (TF1 keeps the op's order
boxes, classes, scores, count; TF2 shuffles it), so they are told apart by shape, then name,
then - for classes vs scores, which share a shape - by their values.
"""

import re
from typing import List, Mapping, Optional, Tuple

import numpy as np

from ...errors import ModelError
from ...types import Detections, ImageTransform, TensorSpec
from .common import Options, as_float, check_count, mismatch, to_detections

EXPECTS = "4 outputs: boxes [1, N, 4], classes [1, N], scores [1, N], count [1]"
_OP_OUTPUT = re.compile(r"TFLite_Detection_PostProcess(?::(\d))?$")


class SsdDecoder:
    """Keeps the model's own detections above ``score_threshold``."""

    name = "ssd"
    KEYS = ("score_threshold", "max_detections", "class_offset")

    def __init__(self, output_specs: List[TensorSpec], input_hw: Tuple[int, int],
                 boxes_index: int, count_index: int, pair: Tuple[int, int], pair_known: bool,
                 score_threshold: float = 0.5, max_detections: int = 100,
                 class_offset: int = 0) -> None:
        self.output_specs = output_specs
        self.input_hw = input_hw
        self.boxes_index = boxes_index
        self.count_index = count_index
        self.pair = pair                  # (classes, scores) indices, or the two in any order
        self.pair_known = pair_known
        self.score_threshold = score_threshold
        self.max_detections = max_detections
        self.class_offset = class_offset

    @classmethod
    def from_dict(cls, cfg: Mapping, path: str, input_spec: TensorSpec,
                  output_specs: List[TensorSpec]) -> "SsdDecoder":
        opts = Options(cfg, path, cls.KEYS)
        height, width = input_spec.hw
        if height <= 0 or width <= 0:
            raise ModelError("decoder ssd needs the model's input size, but input %r is dynamic "
                             "%s; build the decoder with the resolved input spec" % (
                                 input_spec.name, list(input_spec.shape)))
        boxes_index, count_index, pair, known = _identify(output_specs)
        return cls(output_specs, (height, width), boxes_index, count_index, pair, known,
                   score_threshold=opts.fraction("score_threshold", 0.5),
                   max_detections=opts.count("max_detections", 100),
                   class_offset=opts.count("class_offset", 0, lo=-1000))

    def __call__(self, outputs: List[np.ndarray], transform: ImageTransform) -> Detections:
        check_count(self.name, outputs, self.output_specs)
        values = [as_float(o, s).reshape(-1) for o, s in zip(outputs, self.output_specs)]
        boxes = values[self.boxes_index].reshape(-1, 4)
        count = min(int(values[self.count_index][0]), len(boxes))
        classes, scores = self._classes_and_scores(values, count)
        boxes, classes, scores = boxes[:count], classes[:count], scores[:count]
        keep = np.flatnonzero(scores >= self.score_threshold)[:self.max_detections]
        height, width = self.input_hw
        # ymin, xmin, ymax, xmax (0..1) -> x1, y1, x2, y2 in model-input pixels
        pixels = boxes[keep][:, [1, 0, 3, 2]] * np.array([width, height, width, height], np.float32)
        class_ids = np.rint(classes[keep]).astype(np.int64) + self.class_offset
        return to_detections(pixels, scores[keep], class_ids, transform)

    def _classes_and_scores(self, values: List[np.ndarray], count: int):
        first, second = (values[i] for i in self.pair)
        if self.pair_known or count == 0:
            return first, second
        # Class ids are whole numbers; scores are fractions. Swap when they look swapped.
        first_whole = bool(np.all(first[:count] == np.rint(first[:count])))
        second_whole = bool(np.all(second[:count] == np.rint(second[:count])))
        if second_whole and not first_whole:
            return second, first
        return first, second


def _identify(specs: List[TensorSpec]) -> Tuple[int, int, Tuple[int, int], bool]:
    """(boxes, count, (classes, scores), whether that pair order is certain) output indices."""
    if len(specs) != 4:
        raise mismatch("ssd", EXPECTS, specs, "use a model exported with the "
                       "TFLite_Detection_PostProcess op, or the yolo decoders")
    boxes = [i for i, s in enumerate(specs) if len(s.shape) == 3 and s.shape[-1] == 4]
    count = [i for i, s in enumerate(specs) if len(s.shape) <= 1 or int(np.prod(s.shape)) == 1]
    if len(boxes) != 1 or len(count) != 1:
        raise mismatch("ssd", EXPECTS, specs)
    rest = [i for i in range(4) if i not in (boxes[0], count[0])]
    if any(len(specs[i].shape) != 2 for i in rest):
        raise mismatch("ssd", EXPECTS, specs)
    pair = _pair_by_name(specs, rest)
    return boxes[0], count[0], pair if pair else (rest[0], rest[1]), pair is not None


def _pair_by_name(specs: List[TensorSpec], rest: List[int]) -> Optional[Tuple[int, int]]:
    names = [specs[i].name.lower() for i in rest]
    for i, name in zip(rest, names):
        if "class" in name:
            return i, rest[1] if i == rest[0] else rest[0]
        if "score" in name:
            return rest[1] if i == rest[0] else rest[0], i
    # The op's own numbering: :1 is classes, :2 is scores.
    numbers = [_OP_OUTPUT.search(specs[i].name) for i in rest]
    if all(numbers) and {m.group(1) for m in numbers} == {"1", "2"}:
        return (rest[0], rest[1]) if numbers[0].group(1) == "1" else (rest[1], rest[0])
    return None
