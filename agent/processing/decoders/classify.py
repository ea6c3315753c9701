"""Image classifiers: one output of C scores (logits or probabilities, float or quantized)."""

from typing import List, Mapping

import numpy as np

from ...types import Classifications, ImageTransform, TensorSpec
from .common import Options, as_float, batch_ok, check_count, first_of_batch, mismatch

PROBABILITY_SUM_TOLERANCE = 0.05   # quantized probabilities lose a little mass to rounding


class ClassifyDecoder:
    """Top-k classes, best first, with scores at or above ``score_threshold``."""

    name = "classify"
    KEYS = ("softmax", "top_k", "score_threshold")

    def __init__(self, output_spec: TensorSpec, top_k: int = 5, score_threshold: float = 0.0,
                 softmax: str = "auto") -> None:
        self.output_spec = output_spec
        self.top_k = top_k
        self.score_threshold = score_threshold
        self.softmax = softmax

    @classmethod
    def from_dict(cls, cfg: Mapping, path: str, input_spec: TensorSpec,
                  output_specs: List[TensorSpec]) -> "ClassifyDecoder":
        opts = Options(cfg, path, cls.KEYS)
        expects = "one output [1, C] of class scores"
        if len(output_specs) != 1:
            raise mismatch(cls.name, expects, output_specs)
        spec = output_specs[0]
        if not batch_ok(spec) or sum(1 for d in spec.shape[1:] if d != 1) > 1:
            raise mismatch(cls.name, expects, output_specs)
        return cls(spec, top_k=opts.count("top_k", 5),
                   score_threshold=opts.fraction("score_threshold", 0.0),
                   softmax=opts.choice("softmax", ("auto", True, False), "auto"))

    def __call__(self, outputs: List[np.ndarray], transform: ImageTransform) -> Classifications:
        check_count(self.name, outputs, [self.output_spec])
        scores = first_of_batch(as_float(outputs[0], self.output_spec), self.name).reshape(-1)
        if self._needs_softmax(scores):
            scores = _softmax(scores)
        k = min(self.top_k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="mergesort")]
        top = top[scores[top] >= self.score_threshold]
        return Classifications(top, scores[top])

    def _needs_softmax(self, scores: np.ndarray) -> bool:
        if self.softmax != "auto":
            return bool(self.softmax)
        probabilities = bool(scores.min() >= 0.0 and scores.max() <= 1.0 and
                             abs(float(scores.sum()) - 1.0) <= PROBABILITY_SUM_TOLERANCE)
        return not probabilities


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    return (shifted / shifted.sum()).astype(np.float32)
