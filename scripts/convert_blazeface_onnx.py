#!/usr/bin/env python3
"""Convert MediaPipe BlazeFace (face_detection_short_range.tflite) to ONNX, without TensorFlow.

    python scripts/convert_blazeface_onnx.py SRC.tflite OUT.onnx [--verify]

Conversion-only packages: `tflite` (flatbuffer reader, pip install tflite==2.18.0), `onnx`, `numpy`.
`--verify` also needs `ai-edge-litert` and `onnxruntime` and compares both raw outputs.

The ONNX graph keeps the TFLite interface: input "input" float32 NHWC [1,128,128,3] (RGB scaled
to [-1, 1]), outputs "regressors" [1,896,16] and "classificators" [1,896,1] (logits).
Inside, 4-D tensors are NCHW (what ONNX Conv wants); one Transpose after the input and one before
each Reshape restore TFLite's NHWC memory order where it matters.

Only the operators BlazeFace uses are handled; anything else stops the conversion with its name.
"""

import argparse
import os
import sys
from typing import Dict, List

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import tflite

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
# opset 13 / IR 7: TensorRT 8.2 (JetPack 4.6) and onnxruntime 1.10 (Python 3.6) both read them
from onnx_graph import IR_VERSION, OPSET  # noqa: E402  (sibling script, not a package)
NHWC_TO_NCHW = [0, 3, 1, 2]
NCHW_TO_NHWC = [0, 2, 3, 1]

_OP_NAMES = {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}
_NP_TYPES = {tflite.TensorType.FLOAT32: np.float32, tflite.TensorType.FLOAT16: np.float16,
             tflite.TensorType.INT32: np.int32, tflite.TensorType.INT64: np.int64,
             tflite.TensorType.UINT8: np.uint8, tflite.TensorType.INT8: np.int8}


class Converter:
    """Walks the TFLite operators in order and emits equivalent ONNX nodes."""

    def __init__(self, model: "tflite.Model") -> None:
        self.model = model
        self.graph = model.Subgraphs(0)
        self.nodes: List[onnx.NodeProto] = []
        self.initializers: List[onnx.TensorProto] = []
        self.consts: Dict[int, np.ndarray] = {}     # tflite index -> constant value
        self.names: Dict[int, str] = {}             # tflite index -> ONNX value name
        self.counter = 0

    # --- tensors -----------------------------------------------------------------------------
    def tensor(self, index: int) -> "tflite.Tensor":
        return self.graph.Tensors(index)

    def tensor_name(self, index: int) -> str:
        return self.tensor(index).Name().decode("utf-8")

    def shape(self, index: int) -> List[int]:
        return [int(d) for d in self.tensor(index).ShapeAsNumpy()]

    def constant(self, index: int):
        """The tensor's value if it is a weight (buffer or folded DEQUANTIZE), else None."""
        if index in self.consts:
            return self.consts[index]
        tensor = self.tensor(index)
        data = self.model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(data, int) or data is None or len(data) == 0:
            return None
        value = np.frombuffer(data.tobytes(), dtype=_NP_TYPES[tensor.Type()])
        value = value.reshape(self.shape(index))
        self.consts[index] = value
        return value

    def fresh(self, stem: str) -> str:
        self.counter += 1
        return "%s_%d" % (stem, self.counter)

    def add_init(self, stem: str, value: np.ndarray) -> str:
        name = self.fresh(stem)
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: List[str], outputs: List[str], **attrs) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, name=self.fresh(op), **attrs))

    def activation(self, value: str, fused: int, out: str) -> None:
        """Apply a TFLite fused activation to `value`, writing `out`."""
        if fused == tflite.ActivationFunctionType.NONE:
            self.node("Identity", [value], [out])
        elif fused == tflite.ActivationFunctionType.RELU:
            self.node("Relu", [value], [out])
        elif fused == tflite.ActivationFunctionType.RELU6:
            self.node("Clip", [value, self.add_init("zero", np.array(0, np.float32)),
                               self.add_init("six", np.array(6, np.float32))], [out])
        else:
            raise ValueError("fused activation %d is not supported" % fused)

    # --- the walk ----------------------------------------------------------------------------
    def convert(self) -> onnx.ModelProto:
        graph_in = self.graph.InputsAsNumpy().tolist()
        graph_out = self.graph.OutputsAsNumpy().tolist()
        inputs = []
        for index in graph_in:
            name = self.tensor_name(index)
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(index)))
            self.names[index] = self.fresh(name + "_nchw")
            self.node("Transpose", [name], [self.names[index]], perm=NHWC_TO_NCHW)
        for i in range(self.graph.OperatorsLength()):
            self.convert_op(self.graph.Operators(i))
        outputs = []
        for index in graph_out:
            name = self.tensor_name(index)
            if len(self.shape(index)) == 4:
                raise ValueError("4-D graph output %s would need a layout transpose" % name)
            self.node("Identity", [self.names[index]], [name])
            outputs.append(
                helper.make_tensor_value_info(name, TensorProto.FLOAT, self.shape(index)))
        graph = helper.make_graph(self.nodes, "blazeface_short_range", inputs, outputs,
                                  self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edgeagent convert_blazeface_onnx.py")
        model.ir_version = IR_VERSION
        onnx.checker.check_model(model)
        return model

    def convert_op(self, op: "tflite.Operator") -> None:
        code_entry = self.model.OperatorCodes(op.OpcodeIndex())
        code = max(code_entry.BuiltinCode(), code_entry.DeprecatedBuiltinCode())
        name = _OP_NAMES.get(code, str(code))
        handler = getattr(self, "op_" + name.lower(), None)
        if handler is None:
            raise ValueError("TFLite operator %s is not supported by this converter" % name)
        ins = op.InputsAsNumpy().tolist()
        outs = op.OutputsAsNumpy().tolist()
        handler(op, ins, outs)

    def out_name(self, index: int) -> str:
        self.names[index] = self.fresh(self.tensor_name(index).replace("/", "_").replace(";", "_"))
        return self.names[index]

    # --- operators ---------------------------------------------------------------------------
    def op_dequantize(self, op, ins, outs) -> None:
        value = self.constant(ins[0])
        if value is None or value.dtype != np.float16:
            raise ValueError("only DEQUANTIZE of float16 weights is supported")
        self.consts[outs[0]] = value.astype(np.float32)   # folded: weights become float32

    def conv_pads(self, in_hw, kernel_hw, strides, dilations, padding) -> List[int]:
        """Explicit ONNX pads [top, left, bottom, right] reproducing TFLite SAME/VALID."""
        if padding == tflite.Padding.VALID:
            return [0, 0, 0, 0]
        begins, ends = [], []
        for size, k, s, d in zip(in_hw, kernel_hw, strides, dilations):
            out = -(-size // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
            begins.append(total // 2)
            ends.append(total - total // 2)
        return begins + ends

    def op_conv_2d(self, op, ins, outs, depthwise=False) -> None:
        opts = (tflite.DepthwiseConv2DOptions() if depthwise else tflite.Conv2DOptions())
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        weights = self.constant(ins[1])
        bias = self.constant(ins[2]) if len(ins) > 2 and ins[2] >= 0 else None
        in_shape = self.shape(ins[0])                    # NHWC
        if depthwise:                                    # [1, kh, kw, C*m] -> [C*m, 1, kh, kw]
            onnx_w = weights.transpose(3, 0, 1, 2)
            group = in_shape[3]
        else:                                            # [O, kh, kw, I] -> [O, I, kh, kw]
            onnx_w = weights.transpose(0, 3, 1, 2)
            group = 1
        strides = [opts.StrideH(), opts.StrideW()]
        dilations = [opts.DilationHFactor(), opts.DilationWFactor()]
        kernel = list(onnx_w.shape[2:])
        pads = self.conv_pads(in_shape[1:3], kernel, strides, dilations, opts.Padding())
        conv_in = [self.names[ins[0]], self.add_init("w", np.ascontiguousarray(onnx_w))]
        if bias is not None:
            conv_in.append(self.add_init("b", bias.astype(np.float32)))
        raw = self.fresh("conv")
        self.node("Conv", conv_in, [raw], kernel_shape=kernel, strides=strides,
                  dilations=dilations, pads=pads, group=group)
        self.activation(raw, opts.FusedActivationFunction(), self.out_name(outs[0]))

    def op_depthwise_conv_2d(self, op, ins, outs) -> None:
        self.op_conv_2d(op, ins, outs, depthwise=True)

    def op_add(self, op, ins, outs) -> None:
        opts = tflite.AddOptions()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        if self.shape(ins[0]) != self.shape(ins[1]):
            raise ValueError("ADD with broadcasting is not supported")
        raw = self.fresh("add")
        self.node("Add", [self.names[ins[0]], self.names[ins[1]]], [raw])
        self.activation(raw, opts.FusedActivationFunction(), self.out_name(outs[0]))

    def op_relu(self, op, ins, outs) -> None:
        self.node("Relu", [self.names[ins[0]]], [self.out_name(outs[0])])

    def op_max_pool_2d(self, op, ins, outs) -> None:
        opts = tflite.Pool2DOptions()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        kernel = [opts.FilterHeight(), opts.FilterWidth()]
        strides = [opts.StrideH(), opts.StrideW()]
        pads = self.conv_pads(self.shape(ins[0])[1:3], kernel, strides, [1, 1], opts.Padding())
        raw = self.fresh("pool")
        self.node("MaxPool", [self.names[ins[0]]], [raw], kernel_shape=kernel, strides=strides,
                  pads=pads)
        self.activation(raw, opts.FusedActivationFunction(), self.out_name(outs[0]))

    def op_pad(self, op, ins, outs) -> None:
        paddings = self.constant(ins[1])                 # NHWC rows of [before, after]
        if paddings is None or paddings.shape != (4, 2):
            raise ValueError("PAD needs constant 4-D paddings")
        nchw = paddings[NHWC_TO_NCHW]
        pads = np.concatenate([nchw[:, 0], nchw[:, 1]]).astype(np.int64)
        self.node("Pad", [self.names[ins[0]], self.add_init("pads", pads)],
                  [self.out_name(outs[0])], mode="constant")

    def op_reshape(self, op, ins, outs) -> None:
        source = self.names[ins[0]]
        if len(self.shape(ins[0])) == 4:                 # TFLite reshapes NHWC memory order
            nhwc = self.fresh("nhwc")
            self.node("Transpose", [source], [nhwc], perm=NCHW_TO_NHWC)
            source = nhwc
        target = np.array(self.shape(outs[0]), dtype=np.int64)
        if len(target) == 4:
            raise ValueError("RESHAPE to 4-D is not supported")
        self.node("Reshape", [source, self.add_init("shape", target)], [self.out_name(outs[0])])

    def op_concatenation(self, op, ins, outs) -> None:
        opts = tflite.ConcatenationOptions()
        table = op.BuiltinOptions()
        opts.Init(table.Bytes, table.Pos)
        if any(len(self.shape(i)) == 4 for i in ins):
            raise ValueError("CONCATENATION of 4-D tensors is not supported")
        raw = self.fresh("concat")
        self.node("Concat", [self.names[i] for i in ins], [raw], axis=opts.Axis())
        self.activation(raw, opts.FusedActivationFunction(), self.out_name(outs[0]))


def convert_file(src: str, dst: str) -> onnx.ModelProto:
    with open(src, "rb") as handle:
        model = tflite.Model.GetRootAsModel(handle.read(), 0)
    onnx_model = Converter(model).convert()
    onnx.save(onnx_model, dst)
    return onnx_model


def max_abs_difference(src: str, dst: str, image: np.ndarray) -> Dict[str, float]:
    """Run `image` (float32 [1,128,128,3]) through both runtimes; max |difference| per output."""
    import onnxruntime
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=src)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    tflite_out = {d["name"]: interpreter.get_tensor(d["index"])
                  for d in interpreter.get_output_details()}
    session = onnxruntime.InferenceSession(dst, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    onnx_out = dict(zip(names, session.run(None, {"input": image})))
    return {name: float(np.max(np.abs(onnx_out[name] - tflite_out[name]))) for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("src", help="BlazeFace .tflite file")
    parser.add_argument("dst", help="ONNX file to write")
    parser.add_argument("--verify", action="store_true",
                        help="compare raw outputs with ai-edge-litert on random and photo input")
    args = parser.parse_args(argv)
    convert_file(args.src, args.dst)
    print("wrote %s" % args.dst)
    if args.verify:
        rng = np.random.default_rng(0)
        image = rng.uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
        for name, diff in sorted(max_abs_difference(args.src, args.dst, image).items()):
            print("max |onnx - tflite| %-15s %.3g" % (name, diff))
    return 0


if __name__ == "__main__":
    sys.exit(main())
