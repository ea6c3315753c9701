"""What every decoder needs: option readers with file/key errors, output descriptions for
model-mismatch errors, dequantization, and the last step back to source-frame pixels."""

from typing import Iterable, List, Mapping, Optional, Sequence

import numpy as np

from ...checks import need_bool, need_choice, need_int, need_number, reject_unknown
from ...errors import ModelError
from ...types import Detections, ImageTransform, TensorSpec

SECTION = "decoder."


class Options:
    """Reads one decoder's keys from its ``decoder:`` mapping; unknown keys are errors."""

    def __init__(self, cfg: Mapping, path: str, allowed: Iterable[str]) -> None:
        reject_unknown(cfg, ("type",) + tuple(allowed), path, SECTION)
        self.cfg, self.path = cfg, path

    def fraction(self, key: str, default: float) -> float:
        return need_number(self.cfg.get(key, default), self.path, SECTION + key, 0.0, 1.0)

    def number(self, key: str, default: float, lo: Optional[float] = None) -> float:
        return need_number(self.cfg.get(key, default), self.path, SECTION + key, lo)

    def count(self, key: str, default: Optional[int], lo: int = 1) -> Optional[int]:
        value = self.cfg.get(key, default)
        return None if value is None else need_int(value, self.path, SECTION + key, lo)

    def flag(self, key: str, default: bool) -> bool:
        return need_bool(self.cfg.get(key, default), self.path, SECTION + key)

    def choice(self, key: str, choices: Sequence, default) -> object:
        return need_choice(self.cfg.get(key, default), choices, self.path, SECTION + key)


def describe(specs: Sequence[TensorSpec]) -> str:
    """'2 outputs: 'a' [1, 896, 16], 'b' [1, 896, 1]' for error messages."""
    parts = ["%r %s" % (s.name, list(s.shape)) for s in specs]
    return "%d output%s: %s" % (len(specs), "" if len(specs) == 1 else "s", ", ".join(parts))


def mismatch(decoder: str, expects: str, specs: Sequence[TensorSpec], hint: str = "") -> ModelError:
    return ModelError("decoder %s expects %s; model has %s%s" % (
        decoder, expects, describe(specs), ("; " + hint) if hint else ""))


def check_count(decoder: str, outputs: List[np.ndarray], specs: Sequence[TensorSpec]) -> None:
    """Outputs at run time must be the ones the decoder was built for."""
    if len(outputs) != len(specs):
        raise ModelError("decoder %s was built for %s but got %d outputs at run time" % (
            decoder, describe(specs), len(outputs)))


def batch_ok(spec: TensorSpec) -> bool:
    return len(spec.shape) > 0 and spec.shape[0] in (1, -1)


def as_float(array: np.ndarray, spec: TensorSpec) -> np.ndarray:
    """Float values of an output; quantized integer outputs are dequantized with the spec."""
    array = np.asarray(array)
    if array.dtype.kind in "iu" and spec.quantization and spec.quantization[0] > 0:
        scale, zero_point = spec.quantization
        return (array.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)
    return array.astype(np.float32, copy=False)


def first_of_batch(array: np.ndarray, decoder: str) -> np.ndarray:
    if array.ndim == 0 or array.shape[0] != 1:
        raise ModelError("decoder %s expects a batch of 1; got an output of shape %s" % (
            decoder, list(array.shape)))
    return array[0]


def xywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    half_w, half_h = w / 2, h / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)


def to_detections(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                  transform: ImageTransform) -> Detections:
    """Model-input pixel boxes -> Detections in source pixels; boxes left without area (wholly
    in the padding or outside the frame) are dropped."""
    if len(boxes) == 0:
        return Detections.empty()
    source = transform.to_source(np.asarray(boxes, dtype=np.float32))
    real = (source[:, 2] > source[:, 0]) & (source[:, 3] > source[:, 1])
    return Detections(source[real], np.asarray(scores)[real], np.asarray(class_ids)[real])
