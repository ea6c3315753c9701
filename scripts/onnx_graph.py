"""A small ONNX graph writer shared by the model-building scripts: unique names, initializers,
nodes, and the model wrapper with the opset/IR version older runtimes load (ORT 1.10 on
JetPack 4.6)."""

from typing import List, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

OPSET = 13
IR_VERSION = 7


class OnnxGraph:
    def __init__(self) -> None:
        self.nodes: List[onnx.NodeProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.count = 0

    def name(self, stem: str) -> str:
        self.count += 1
        return "%s_%d" % (stem, self.count)

    def init(self, stem: str, value: np.ndarray) -> str:
        name = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(self, op_type: str, inputs: List[str], outputs: int = 1, **attrs):
        names = [self.name(op_type.lower()) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, names, name=self.name(op_type),
                                           **attrs))
        return names[0] if outputs == 1 else names

    def model(self, graph_name: str, inputs: Sequence[onnx.ValueInfoProto],
              outputs: Sequence[onnx.ValueInfoProto], producer: str) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, graph_name, list(inputs), list(outputs), self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name=producer)
        model.ir_version = IR_VERSION
        return model
