#!/usr/bin/env python3
"""Build the YOLOv8n network as ONNX in Ultralytics' export layout - WITH UNTRAINED WEIGHTS.

    python scripts/build_yolov8n_onnx.py OUT.onnx [--seed 0] [--classes 80] [--size 640]

No PyPI wheel we could find ships trained COCO YOLOv8 weights (Ultralytics downloads them at run
time, which this project forbids), so this script writes the genuine YOLOv8n graph - Conv+SiLU,
C2f, SPPF, FPN/PAN neck, decoupled head with DFL - with seeded random weights. It is for shape,
layout, decoder and speed tests, not for accuracy: it detects nothing meaningful.

Interface (same as `yolo export format=onnx imgsz=640 opset=13`):
  input  "images"  float32 NCHW [1,3,640,640], RGB, pixel / 255, letterboxed (pad value 114)
  output "output0" float32 [1,84,8400]: rows 0-3 box cx,cy,w,h in input pixels, rows 4-83 class
         scores (sigmoid already applied); columns are the 80x80, 40x40, 20x20 grid cells.
Metadata props mimic Ultralytics' (stride, task, imgsz, names) plus trained="false".
"""

import argparse
import os
import sys
from typing import Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_graph import OnnxGraph  # noqa: E402  (sibling script, not a package)

REG_MAX = 16
STRIDES = (8, 16, 32)
COCO80 = tuple(
    "person,bicycle,car,motorcycle,airplane,bus,train,truck,boat,traffic light,fire hydrant,"
    "stop sign,parking meter,bench,bird,cat,dog,horse,sheep,cow,elephant,bear,zebra,giraffe,"
    "backpack,umbrella,handbag,tie,suitcase,frisbee,skis,snowboard,sports ball,kite,baseball bat,"
    "baseball glove,skateboard,surfboard,tennis racket,bottle,wine glass,cup,fork,knife,spoon,bowl,"
    "banana,apple,sandwich,orange,broccoli,carrot,hot dog,pizza,donut,cake,chair,couch,"
    "potted plant,bed,dining table,toilet,tv,laptop,mouse,remote,keyboard,cell phone,microwave,"
    "oven,toaster,sink,refrigerator,book,clock,vase,scissors,teddy bear,hair drier,toothbrush"
    .split(","))


class YoloBuilder(OnnxGraph):
    def __init__(self, seed: int, classes: int) -> None:
        OnnxGraph.__init__(self)
        self.rng = np.random.default_rng(seed)
        self.classes = classes

    def conv2d(self, x: str, c_in: int, c_out: int, k: int, s: int, bias: float = 0.0) -> str:
        fan_in = c_in * k * k   # He init, halved so the untrained activations stay moderate
        weight = self.rng.normal(0, np.sqrt(1.0 / fan_in), (c_out, c_in, k, k)).astype(np.float32)
        b = np.full((c_out,), bias, np.float32)
        return self.op("Conv", [x, self.init("w", weight), self.init("b", b)],
                       kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)

    def conv(self, x: str, c_in: int, c_out: int, k: int = 1, s: int = 1) -> str:
        """Ultralytics Conv: conv + (folded) batch norm + SiLU, exported as x * sigmoid(x)."""
        y = self.conv2d(x, c_in, c_out, k, s)
        return self.op("Mul", [y, self.op("Sigmoid", [y])])

    def c2f(self, x: str, c_in: int, c_out: int, n: int, shortcut: bool) -> str:
        c = c_out // 2
        y = self.conv(x, c_in, 2 * c)
        parts = list(self.op("Split", [y, self.init("split", np.array([c, c], np.int64))],
                             outputs=2, axis=1))
        for _ in range(n):
            h = self.conv(self.conv(parts[-1], c, c, 3), c, c, 3)
            parts.append(self.op("Add", [parts[-1], h]) if shortcut else h)
        return self.conv(self.op("Concat", parts, axis=1), (2 + n) * c, c_out)

    def sppf(self, x: str, c_in: int, c_out: int) -> str:
        c = c_in // 2
        y = [self.conv(x, c_in, c)]
        for _ in range(3):
            y.append(self.op("MaxPool", [y[-1]], kernel_shape=[5, 5], strides=[1, 1],
                             pads=[2, 2, 2, 2]))
        return self.conv(self.op("Concat", y, axis=1), 4 * c, c_out)

    def upsample(self, x: str) -> str:
        scales = self.init("scales", np.array([1, 1, 2, 2], np.float32))
        return self.op("Resize", [x, "", scales], mode="nearest")

    def backbone_and_neck(self, image: str) -> Tuple[str, str, str]:
        x = self.conv(self.conv(image, 3, 16, 3, 2), 16, 32, 3, 2)
        x = self.c2f(x, 32, 32, 1, True)
        p3 = self.c2f(self.conv(x, 32, 64, 3, 2), 64, 64, 2, True)
        p4 = self.c2f(self.conv(p3, 64, 128, 3, 2), 128, 128, 2, True)
        p5 = self.c2f(self.conv(p4, 128, 256, 3, 2), 256, 256, 1, True)
        p5 = self.sppf(p5, 256, 256)
        n4 = self.c2f(self.op("Concat", [self.upsample(p5), p4], axis=1), 384, 128, 1, False)
        n3 = self.c2f(self.op("Concat", [self.upsample(n4), p3], axis=1), 192, 64, 1, False)
        m4 = self.c2f(self.op("Concat", [self.conv(n3, 64, 64, 3, 2), n4], axis=1), 192, 128, 1,
                      False)
        m5 = self.c2f(self.op("Concat", [self.conv(m4, 128, 128, 3, 2), p5], axis=1), 384, 256,
                      1, False)
        return n3, m4, m5

    def head_level(self, x: str, channels: int, stride: int) -> str:
        # Head widths come from the first (P3, 64-channel) level, as in Ultralytics' Detect.
        c2, c3 = max(16, 64 // 4, 4 * REG_MAX), max(64, min(self.classes, 100))
        box = self.conv(self.conv(x, channels, c2, 3), c2, c2, 3)
        box = self.conv2d(box, c2, 4 * REG_MAX, 1, 1, bias=1.0)
        cls_bias = float(np.log(5.0 / self.classes / (640.0 / stride) ** 2))   # Ultralytics' init
        cls = self.conv(self.conv(x, channels, c3, 3), c3, c3, 3)
        cls = self.conv2d(cls, c3, self.classes, 1, 1, bias=cls_bias)
        both = self.op("Concat", [box, cls], axis=1)
        shape = self.init("shape", np.array([1, 4 * REG_MAX + self.classes, -1], np.int64))
        return self.op("Reshape", [both, shape])

    def decode(self, raw: str, size: int) -> str:
        """DFL + dist2bbox + sigmoid, exactly as Ultralytics' Detect head exports it."""
        box, cls = self.op("Split", [raw, self.init("split", np.array(
            [4 * REG_MAX, self.classes], np.int64))], outputs=2, axis=1)
        bins = self.op("Reshape", [box, self.init("shape", np.array([1, 4, REG_MAX, -1],
                                                                    np.int64))])
        prob = self.op("Softmax", [self.op("Transpose", [bins], perm=[0, 2, 1, 3])], axis=1)
        dfl_w = np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1)
        dist = self.op("Conv", [prob, self.init("dfl", dfl_w)], kernel_shape=[1, 1])
        dist = self.op("Reshape", [dist, self.init("shape", np.array([1, 4, -1], np.int64))])
        lt, rb = self.op("Split", [dist, self.init("split", np.array([2, 2], np.int64))],
                         outputs=2, axis=1)
        anchors, strides = anchor_points(size)
        anchor = self.init("anchors", anchors)
        x1y1 = self.op("Sub", [anchor, lt])
        x2y2 = self.op("Add", [anchor, rb])
        centre = self.op("Div", [self.op("Add", [x1y1, x2y2]), self.init("two", np.array(
            2, np.float32))])
        wh = self.op("Sub", [x2y2, x1y1])
        boxes = self.op("Mul", [self.op("Concat", [centre, wh], axis=1),
                                self.init("strides", strides)])
        return self.op("Concat", [boxes, self.op("Sigmoid", [cls])], axis=1)

    def build(self, size: int) -> onnx.ModelProto:
        levels = self.backbone_and_neck("images")
        raw = self.op("Concat", [self.head_level(x, c, s) for x, c, s in
                                 zip(levels, (64, 128, 256), STRIDES)], axis=2)
        out = self.decode(raw, size)
        self.nodes.append(helper.make_node("Identity", [out], ["output0"], name="output"))
        cells = sum((size // s) ** 2 for s in STRIDES)
        model = self.model(
            "yolov8n_untrained",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, size, size])],
            [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                           [1, 4 + self.classes, cells])],
            "edgeagent build_yolov8n_onnx.py")
        names = COCO80 if self.classes == 80 else tuple(str(i) for i in range(self.classes))
        helper.set_model_props(model, {
            "description": "YOLOv8n architecture with UNTRAINED random weights (layout tests only)",
            "trained": "false", "task": "detect", "stride": "32", "batch": "1",
            "imgsz": "[%d, %d]" % (size, size),
            "names": str({i: n for i, n in enumerate(names)})})
        onnx.checker.check_model(model)
        return model


def anchor_points(size: int) -> Tuple[np.ndarray, np.ndarray]:
    """Grid-cell centres [1,2,N] (in cells) and their strides [1,1,N], levels 8/16/32."""
    points, strides = [], []
    for stride in STRIDES:
        cells = size // stride
        ys, xs = np.meshgrid(np.arange(cells) + 0.5, np.arange(cells) + 0.5, indexing="ij")
        points.append(np.stack([xs.ravel(), ys.ravel()]))
        strides.append(np.full(cells * cells, stride))
    return (np.concatenate(points, 1)[None].astype(np.float32),
            np.concatenate(strides)[None, None].astype(np.float32))


def build_file(dst: str, seed: int = 0, classes: int = 80, size: int = 640) -> onnx.ModelProto:
    if size % 32:
        raise ValueError("size must be a multiple of 32, got %d" % size)
    model = YoloBuilder(seed, classes).build(size)
    onnx.save(model, dst)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dst")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--classes", type=int, default=80)
    parser.add_argument("--size", type=int, default=640)
    args = parser.parse_args(argv)
    build_file(args.dst, args.seed, args.classes, args.size)
    print("wrote %s (UNTRAINED weights)" % args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
