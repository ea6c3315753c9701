"""How far an INT8 model strays from its float reference on held-out images, and the gate that
refuses it below a bar. Backend-neutral: the two sides are any Backends (ONNX Runtime fp32 vs
QDQ INT8, TensorRT fp16 vs INT8) run through the pipeline's own preprocess and decoder.

- detections: matched greedily, best score first, same class, IoU >= 0.5; recall (reference
  boxes found), precision (INT8 boxes that are real), and their F1 as "match";
- score drift: |score_int8 - score_ref| over matched pairs (mean and max);
- top-1: the images whose best result (class, and box at IoU 0.5 for detectors) agrees.
Runs on the device (Python 3.6)."""

from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..errors import ConfigError, ModelError
from ..types import Classifications, Detections

IOU_MATCH = 0.5


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    if width <= 0 or height <= 0:
        return 0.0
    inter = float(width * height)
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def match_detections(ref: Detections, test: Detections,
                     iou: float = IOU_MATCH) -> List[Tuple[int, int]]:
    """(ref index, test index) pairs: each reference box, best first, takes the unused test box
    of its class with the highest IoU >= `iou`."""
    used = set()
    pairs = []
    for r in np.argsort(-ref.scores, kind="mergesort"):
        best, best_iou = None, iou
        for t in range(len(test)):
            if t in used or test.class_ids[t] != ref.class_ids[r]:
                continue
            overlap = box_iou(ref.boxes[r], test.boxes[t])
            if overlap >= best_iou:
                best, best_iou = t, overlap
        if best is not None:
            used.add(best)
            pairs.append((int(r), best))
    return pairs


@dataclass(frozen=True)
class Agreement:
    images: int
    ref_count: int            # reference detections (or images, for classifiers)
    test_count: int
    matched: int
    top1: float               # share of images whose best result agrees
    score_drift_mean: float
    score_drift_max: float
    kind: str = "detect"

    @property
    def recall(self) -> float:
        return self.matched / float(self.ref_count) if self.ref_count else 1.0

    @property
    def precision(self) -> float:
        return self.matched / float(self.test_count) if self.test_count else 1.0

    @property
    def match(self) -> float:
        """F1 of recall and precision (classifiers: top-1 agreement)."""
        if self.kind == "classify":
            return self.top1
        total = self.recall + self.precision
        return 2 * self.recall * self.precision / total if total else 0.0

    def describe(self) -> str:
        if self.kind == "classify":
            return ("top-1 agreement %.3f over %d held-out images, score drift mean %.4f max "
                    "%.4f" % (self.top1, self.images, self.score_drift_mean,
                              self.score_drift_max))
        return ("detections matched %.3f (recall %.3f of %d, precision %.3f of %d, IoU %.1f) "
                "over %d held-out images, top-1 %.3f, score drift mean %.4f max %.4f" % (
                    self.match, self.recall, self.ref_count, self.precision, self.test_count,
                    IOU_MATCH, self.images, self.top1, self.score_drift_mean,
                    self.score_drift_max))

    def as_dict(self) -> dict:
        return {"images": self.images, "reference": self.ref_count, "int8": self.test_count,
                "matched": self.matched, "match": round(self.match, 4),
                "recall": round(self.recall, 4), "precision": round(self.precision, 4),
                "top1": round(self.top1, 4), "score_drift_mean": round(self.score_drift_mean, 5),
                "score_drift_max": round(self.score_drift_max, 5), "iou": IOU_MATCH}


def agreement(ref_results: Sequence, test_results: Sequence) -> Agreement:
    """Compare per-image results (Detections or Classifications) of the two models."""
    if not ref_results or len(ref_results) != len(test_results):
        raise ValueError("need the same, non-zero number of results on both sides")
    if isinstance(ref_results[0], Classifications):
        return _classify_agreement(ref_results, test_results)
    drifts = []      # type: List[float]
    matched = ref_count = test_count = top1 = 0
    for ref, test in zip(ref_results, test_results):
        pairs = match_detections(ref, test)
        matched += len(pairs)
        ref_count += len(ref)
        test_count += len(test)
        drifts.extend(abs(float(test.scores[t]) - float(ref.scores[r])) for r, t in pairs)
        top1 += int(_best_agrees(ref, test))
    return Agreement(len(ref_results), ref_count, test_count, matched, top1 / float(len(ref_results)),
                     float(np.mean(drifts)) if drifts else 0.0,
                     float(np.max(drifts)) if drifts else 0.0)


def _best_agrees(ref: Detections, test: Detections) -> bool:
    if len(ref) == 0 or len(test) == 0:
        return len(ref) == len(test)
    r, t = int(np.argmax(ref.scores)), int(np.argmax(test.scores))
    return bool(ref.class_ids[r] == test.class_ids[t] and
                box_iou(ref.boxes[r], test.boxes[t]) >= IOU_MATCH)


def _classify_agreement(ref_results, test_results) -> Agreement:
    same, drifts = 0, []
    for ref, test in zip(ref_results, test_results):
        if len(ref) and len(test) and ref.class_ids[0] == test.class_ids[0]:
            same += 1
            drifts.append(abs(float(test.scores[0]) - float(ref.scores[0])))
    n = len(ref_results)
    return Agreement(n, n, n, same, same / float(n), float(np.mean(drifts)) if drifts else 0.0,
                     float(np.max(drifts)) if drifts else 0.0, kind="classify")


@dataclass(frozen=True)
class Gate:
    """The bar an INT8 model must clear; defaults refuse what users report as broken INT8."""

    min_match: float = 0.9
    min_top1: float = 0.9
    max_score_drift: float = 0.1       # mean over matched pairs

    @classmethod
    def from_args(cls, args) -> "Gate":
        """From --min-match, --min-top1 and --max-score-drift (quantize, build-engine)."""
        for flag, value in (("--min-match", args.min_match), ("--min-top1", args.min_top1)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError("%s %s: a fraction from 0 to 1 (default %s)"
                                  % (flag, value, getattr(cls, flag[2:].replace("-", "_"))))
        if args.max_score_drift < 0:
            raise ConfigError("--max-score-drift %s: a score difference of 0 or more (default %s)"
                              % (args.max_score_drift, cls.max_score_drift))
        return cls(args.min_match, args.min_top1, args.max_score_drift)

    def failures(self, found: Agreement) -> List[str]:
        failed = []
        if found.kind == "detect" and found.ref_count == 0:
            failed.append("the reference model finds nothing on the held-out images, so there "
                          "is nothing to compare; use images with the objects it detects")
        if found.match < self.min_match:
            failed.append("match %.3f < %.3f" % (found.match, self.min_match))
        if found.top1 < self.min_top1:
            failed.append("top-1 %.3f < %.3f" % (found.top1, self.min_top1))
        if found.score_drift_mean > self.max_score_drift:
            failed.append("score drift %.4f > %.4f" % (found.score_drift_mean,
                                                        self.max_score_drift))
        return failed

    def check(self, found: Agreement, what: str, hint: Optional[str] = None) -> None:
        """ModelError with every figure when `found` is below the gate."""
        failed = self.failures(found)
        if failed:
            raise ModelError("%s refused by the INT8 accuracy gate (%s): %s; %s" % (
                what, "; ".join(failed), found.describe(),
                hint or "calibrate on more images like the deployment's, or lower the gate"))


def holdout_split(items: Sequence, every: int, where: str) -> Tuple[List, List]:
    """(calibration, held-out): every `every`-th item is held out of calibration, so the gate
    judges the INT8 model on images it was not calibrated on. `where` names the images."""
    if every < 2:
        raise ConfigError("--holdout-every %d: must be 2 or more (every Nth image is held out "
                          "to judge the INT8 model)" % every)
    if len(items) < every:
        raise ConfigError("%s: %d images; the INT8 gate holds out every %dth, so give it at "
                          "least %d" % (where, len(items), every, every))
    held = list(items[every - 1::every])
    calibration = [item for i, item in enumerate(items) if (i + 1) % every]
    return calibration, held
