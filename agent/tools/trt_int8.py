"""`build-engine --precision int8 --calibration-dir DIR` behind the INT8 accuracy gate.

Every Nth image of DIR is held out: the existing TensorRT INT8 calibration sees the others
only. The INT8 engine and an fp16 reference engine (same cache) then run the held-out images
through the pipeline's preprocess and decoder, and agent/tools/int8_gate.py compares them (IoU 0.5
matches, top-1, score drift). Below the gate the INT8 engine is deleted and the command fails
with the figures. Runs on the device (Python 3.6, JetPack 4.6)."""

import argparse
import copy
import logging
import os
import shutil
import tempfile
from typing import Callable, List, Tuple

from ..errors import ConfigError
from ..types import FP16
from .int8_gate import Agreement, Gate, agreement, holdout_split

log = logging.getLogger(__name__)


def add_arguments(p) -> None:
    """The gate's options on build-engine (used with --precision int8 --calibration-dir)."""
    p.add_argument("--holdout-every", type=int, default=4, metavar="N",
                   help="int8: every Nth calibration image is held out to judge agreement (4)")
    p.add_argument("--min-match", type=float, default=Gate.min_match,
                   help="int8 gate: detections matched at IoU 0.5 (F1), or top-1 (0.9)")
    p.add_argument("--min-top1", type=float, default=Gate.min_top1, help="int8 gate (0.9)")
    p.add_argument("--max-score-drift", type=float, default=Gate.max_score_drift,
                   help="int8 gate: mean |score change| of matched results (0.1)")


def split_images(calibration_dir: str, every: int, where: str) -> Tuple[List[str], List[str]]:
    from ..backends.tensorrt.calibrator import calibration_images
    return holdout_split(calibration_images(calibration_dir, where), every,
                         "--calibration-dir %s" % calibration_dir)


def gated_int8_build(args, build: Callable[[argparse.Namespace], str]) -> str:
    """Build the INT8 engine in a scratch cache, calibrated without the held-out images (so no
    earlier calibration table is reused), judge it against fp16, and only when the gate passes
    move it into the real engine cache where `run` finds it."""
    from ..config.agent_config import load_config
    from ..config.pipeline_spec import load_pipeline
    spec = load_pipeline(args.pipeline)
    gate = Gate.from_args(args)
    cache_dir = args.cache_dir or os.path.join(load_config(args.config).state_dir, "engines")
    calibration, held = split_images(args.calibration_dir, args.holdout_every, spec.path)
    ref_args = copy.copy(args)
    ref_args.precision, ref_args.calibration_dir, ref_args.cache_dir = FP16, None, cache_dir
    ref_engine = build(ref_args)
    with tempfile.TemporaryDirectory() as tmp:
        images, scratch = os.path.join(tmp, "images"), os.path.join(tmp, "engines")
        os.makedirs(images)
        for path in calibration:
            shutil.copyfile(path, os.path.join(images, os.path.basename(path)))
        int8_args = copy.copy(args)
        int8_args.calibration_dir, int8_args.cache_dir = images, scratch
        int8_engine = build(int8_args)
        found = judge_engines(spec, ref_engine, int8_engine, held)
        log.info("INT8 engine vs fp16: %s", found.describe())
        gate.check(found, "%s: INT8 engine" % spec.name, "nothing was added to the engine cache; "
                   "calibrate on more images like the deployment's, lower the gate, or build fp16")
        stem = os.path.splitext(os.path.basename(int8_engine))[0]
        os.makedirs(cache_dir, exist_ok=True)
        for name in os.listdir(scratch):
            if name.startswith(stem + "."):
                shutil.copyfile(os.path.join(scratch, name), os.path.join(cache_dir, name))
    return "%s\nINT8 agreement with fp16 on %d held-out images: %s" % (
        os.path.join(cache_dir, stem + ".engine"), len(held), found.describe())


def judge_engines(spec, ref_engine: str, test_engine: str, held: List[str]) -> Agreement:
    import cv2
    from .. import backends
    from ..inference import Inference
    from ..sources.live import make_frame
    sides = []
    try:
        for engine in (ref_engine, test_engine):
            backend = backends.load("tensorrt", engine, {},
                                    backends.BackendContext(spec.path, input_size=spec.input_size))
            sides.append(Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path,
                                              spec.labels, spec.input_size))
        results = [[], []]  # type: List[list]
        for index, path in enumerate(held):
            image = cv2.imread(path, cv2.IMREAD_COLOR)
            if image is None:
                raise ConfigError("%s: cannot decode this calibration image" % path)
            for side, found in zip(sides, results):
                result = side(make_frame(image, index))
                found.append(result.detections if result.detections is not None
                             else result.classifications)
    finally:
        for side in sides:
            side.backend.close()
    return agreement(results[0], results[1])
