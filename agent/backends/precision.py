"""The one meaning of BackendInfo.precision for model-file backends: the numeric format the
loaded model computes in, read from its weights and ops (not from its input dtype: a float model
fed uint8 pixels is still fp32). TensorRT reports its engine's build precision instead."""

from typing import Iterable, Optional

from ..types import FP16, FP32, INT8

# ONNX ops that only appear in quantized graphs (QDQ or operator-oriented QOperator format)
QUANT_OPS = frozenset(("QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                       "ConvInteger", "MatMulInteger", "QLinearAdd", "QLinearMul"))
_ONNX_UINT8, _ONNX_INT8, _ONNX_FLOAT, _ONNX_FLOAT16 = 2, 3, 1, 10   # TensorProto.DataType


def from_weights(ops: Iterable[str], weight_types: Iterable[str]) -> str:
    """int8 when any quantized op or integer weight is present; fp16 when the float weights are
    float16; else fp32. weight_types are numpy dtype names."""
    if QUANT_OPS.intersection(ops):
        return INT8
    types = list(weight_types)
    if any(t in ("int8", "uint8") for t in types):
        return INT8
    halves = sum(1 for t in types if t == "float16")
    return FP16 if halves and halves >= sum(1 for t in types if t == "float32") else FP32


def onnx_precision(model_path: str, quantized_metadata: bool, input_dtype: str) -> str:
    """From the graph with the `onnx` package when installed; without it (a Jetson with only
    onnxruntime) from the quantizer's metadata mark and the input dtype."""
    graph = _onnx_graph(model_path)
    if graph is None:
        if quantized_metadata:
            return INT8
        return FP16 if input_dtype == "float16" else FP32
    names = {_ONNX_UINT8: "uint8", _ONNX_INT8: "int8", _ONNX_FLOAT: "float32",
             _ONNX_FLOAT16: "float16"}
    return from_weights((n.op_type for n in graph.node),
                        (names.get(i.data_type, "other") for i in graph.initializer))


def _onnx_graph(model_path: str) -> Optional[object]:
    try:
        import onnx
    except ImportError:
        return None
    try:
        return onnx.load(model_path, load_external_data=False).graph
    except Exception:  # noqa: BLE001 - onnx raises its own decode errors; ORT loaded it already
        return None


def tflite_precision(tensor_details: Iterable[dict]) -> str:
    """Quantized tensors (int8/uint8 with a scale) -> int8; float16 weights -> fp16; else fp32."""
    types = []
    for detail in tensor_details:
        dtype = getattr(detail.get("dtype"), "__name__", str(detail.get("dtype")))
        scale = (detail.get("quantization") or (0.0, 0))[0]
        if dtype in ("int8", "uint8") and not scale:
            continue        # plain integer tensors (indices, uint8 pixels) are not quantization
        types.append(dtype)
    return from_weights((), types)
