"""Preprocessor vs cv2.dnn.blobFromImage, side by side in one process, on a 1280x720 frame.

    .venv/bin/python benchmarks/bench_preprocess.py [--calls N]

For each model input it times our Preprocessor (letterbox and stretch) against the OpenCV
equivalents: blobFromImage alone (stretch resize + swapRB + mean + scale) and blobFromImage
after cv2.resize + cv2.copyMakeBorder (letterbox). NHWC inputs add the transpose blobFromImage
needs to give NHWC. Prints mean/p50 per call in ms and the ratio OpenCV time / ours.
"""

import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agent.processing.preprocess import (PreprocessConfig, Preprocessor,  # noqa: E402
                                         letterbox_box)
from agent.types import TensorSpec  # noqa: E402

CASES = [
    # name, spec, mean, std (blobFromImage: (x - mean) * scalefactor, so std must be uniform)
    ("640x640 NCHW float32 (YOLO: RGB, mean 0, std 255)",
     TensorSpec("images", (1, 3, 640, 640), "float32"), 0.0, 255.0),
    ("128x128 NHWC float32 (BlazeFace: RGB, mean 127.5, std 127.5)",
     TensorSpec("input", (1, 128, 128, 3), "float32"), 127.5, 127.5),
]


def time_calls(fn, calls):
    for _ in range(max(10, calls // 20)):
        fn()
    times = np.empty(calls)
    for i in range(calls):
        start = time.perf_counter()
        fn()
        times[i] = time.perf_counter() - start
    return times * 1e3


def opencv_stretch(frame, spec, mean, std):
    height, width = spec.hw
    nhwc = spec.layout == "NHWC"

    def run():
        blob = cv2.dnn.blobFromImage(frame, 1.0 / std, (width, height), (mean,) * 3, swapRB=True)
        return np.ascontiguousarray(blob.transpose(0, 2, 3, 1)) if nhwc else blob
    return run


def opencv_letterbox(frame, spec, mean, std, pad):
    height, width = spec.hw
    new_w, new_h, left, top = letterbox_box(frame.shape[1], frame.shape[0], width, height)
    nhwc = spec.layout == "NHWC"

    def run():
        resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        boxed = cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left,
                                   cv2.BORDER_CONSTANT, value=(pad,) * 3)
        blob = cv2.dnn.blobFromImage(boxed, 1.0 / std, (width, height), (mean,) * 3, swapRB=True)
        return np.ascontiguousarray(blob.transpose(0, 2, 3, 1)) if nhwc else blob
    return run


def ours(frame, spec, mean, std, resize):
    cfg = PreprocessConfig.from_dict({"resize": resize, "color": "rgb", "mean": [mean] * 3,
                                      "std": [std] * 3}, "bench")
    pre = Preprocessor(cfg, spec)
    return lambda: pre(frame)[0]


def report(label, times, baseline=None):
    line = "  %-44s mean %7.3f ms  p50 %7.3f ms" % (label, times.mean(), np.median(times))
    if baseline is not None:
        line += "   opencv/ours %5.2fx (p50 %5.2fx)" % (
            baseline.mean() / times.mean(), np.median(baseline) / np.median(times))
    print(line)


def check_same(ours_fn, opencv_fn, label):
    """The comparison is only fair if both compute the same tensor."""
    diff = float(np.abs(ours_fn().astype(np.float64) - opencv_fn().astype(np.float64)).max())
    print("  %-44s max |ours - opencv| = %.2g" % (label, diff))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="timed calls per variant")
    args = parser.parse_args()
    frame = np.random.RandomState(0).randint(0, 256, (720, 1280, 3)).astype(np.uint8)
    print("OpenCV %s, numpy %s, cv2 threads %d, %d CPUs, %d calls each" % (
        cv2.__version__, np.__version__, cv2.getNumThreads(), os.cpu_count() or 0, args.calls))
    for name, spec, mean, std in CASES:
        print("\n1280x720 BGR -> %s" % name)
        variants = [
            ("letterbox", opencv_letterbox(frame, spec, mean, std, 114),
             ours(frame, spec, mean, std, "letterbox")),
            ("stretch", opencv_stretch(frame, spec, mean, std),
             ours(frame, spec, mean, std, "stretch")),
        ]
        for resize, opencv_fn, ours_fn in variants:
            check_same(ours_fn, opencv_fn, "%s: same output?" % resize)
            base = time_calls(opencv_fn, args.calls)
            mine = time_calls(ours_fn, args.calls)
            opencv_name = ("resize+copyMakeBorder+blobFromImage" if resize == "letterbox"
                           else "blobFromImage")
            if spec.layout == "NHWC":
                opencv_name += "+transpose"
            report("%s: %s" % (resize, opencv_name), base)
            report("%s: Preprocessor" % resize, mine, base)
    return 0


if __name__ == "__main__":
    sys.exit(main())
