"""What a model file is: format, inputs and outputs (names, dtypes, shapes with their dynamic
axes), opset and IR version, producer, metadata and size - read with the runtime the device has.

ONNX header fields are read from the protobuf directly (a few varint fields), so `inspect` works
on a device with onnxruntime but without the `onnx` package. Runs on Python 3.6."""

import ast
import os
from dataclasses import dataclass, field  # novm: the dataclasses backport serves 3.6
from typing import Dict, List, Optional, Tuple, Union

from ..errors import EdgeAgentError, ModelError
from ..types import TensorSpec

Dim = Union[int, str]          # a fixed size, or the name of a dynamic axis ("?" when unnamed)
FORMATS = {".onnx": "onnx", ".tflite": "tflite", ".engine": "tensorrt", ".plan": "tensorrt",
           ".trt": "tensorrt"}
BACKEND_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "tflite", "tensorrt": "tensorrt"}


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: Tuple[Dim, ...]
    dtype: str
    quantization: Optional[Tuple[float, int]] = None

    @property
    def dynamic_axes(self) -> Dict[int, str]:
        return {i: str(d) for i, d in enumerate(self.shape) if not isinstance(d, int) or d < 0}

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, tuple(d if isinstance(d, int) and d >= 0 else -1
                                           for d in self.shape), self.dtype, self.quantization)

    @property
    def layout(self) -> str:
        """NCHW / NHWC for 4-D image tensors, else empty."""
        return self.spec().layout if len(self.shape) == 4 else ""


@dataclass(frozen=True)
class ModelInfo:
    path: str
    format: str                       # onnx | tflite | tensorrt
    size_bytes: int
    inputs: List[TensorInfo]
    outputs: List[TensorInfo]
    runtime: str = ""                 # what read it, e.g. "onnxruntime 1.32.0"
    ir_version: Optional[int] = None
    opsets: Dict[str, int] = field(default_factory=dict)   # domain ("" = ai.onnx) -> version
    producer: str = ""
    metadata: Dict[str, str] = field(default_factory=dict)

    @property
    def backend(self) -> str:
        return BACKEND_OF_FORMAT[self.format]

    @property
    def opset(self) -> Optional[int]:
        return self.opsets.get("", self.opsets.get("ai.onnx"))

    @property
    def class_names(self) -> List[str]:
        """Class names an Ultralytics export embeds (`names` metadata: "{0: 'a', ...}")."""
        text = self.metadata.get("names")
        if not text:
            return []
        try:
            names = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            return []
        if isinstance(names, dict) and sorted(names) == list(range(len(names))):
            return [str(names[i]) for i in range(len(names))]
        if isinstance(names, list):
            return [str(n) for n in names]
        return []

    @property
    def trained_size(self) -> Optional[Tuple[int, int]]:
        """(width, height) the model was exported for (Ultralytics `imgsz` metadata: [h, w])."""
        text = self.metadata.get("imgsz")
        try:
            value = ast.literal_eval(text) if text else None
        except (ValueError, SyntaxError):
            return None
        if isinstance(value, int):
            return value, value
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return int(value[1]), int(value[0])
        return None


def model_format(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext in FORMATS:
        return FORMATS[ext]
    with open(path, "rb") as handle:
        head = handle.read(8)
    if head[4:8] == b"TFL3":
        return "tflite"
    raise ModelError("%s: unknown model format (%s); edgeagent reads .onnx, .tflite and "
                     "TensorRT .engine/.plan files" % (path, "extension %r" % ext if ext
                                                       else "no extension"))


def read_model(path: str) -> ModelInfo:
    """Everything `inspect` shows about a model file; ModelError (one line) for a bad file."""
    if os.path.isdir(path):
        raise ModelError("%s: is a folder; give the model file in it" % path)
    if not os.path.isfile(path):
        from ..backends.model_sources import hint_for
        raise ModelError("%s: model file not found%s" % (path, hint_for(path)))
    kind = model_format(path)
    size = os.path.getsize(path)
    if kind == "onnx":
        return _read_onnx(path, size)
    return _read_with_backend(path, size, kind)


# ---- ONNX ---------------------------------------------------------------------------------------

def _read_onnx(path: str, size: int) -> ModelInfo:
    from ..backends.onnxruntime import _ORT_TYPES, _first_line, _import
    header = onnx_header(path)
    ort = _import()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as why:  # ORT raises its own exception types for bad models
        raise ModelError("%s: onnxruntime %s cannot load it (model IR %s, opset %s): %s; "
                         "docs/models.md lists the opset each runtime reads" % (
                             path, ort.__version__, header.get("ir_version"),
                             header.get("opsets", {}).get("", "?"), _first_line(why)))

    def info(node) -> TensorInfo:
        shape = tuple(d if isinstance(d, int) else _axis_name(d) for d in node.shape)
        return TensorInfo(node.name, shape, _ORT_TYPES.get(node.type, node.type))

    meta = session.get_modelmeta()
    metadata = dict(meta.custom_metadata_map)
    return ModelInfo(path, "onnx", size, [info(n) for n in session.get_inputs()],
                     [info(n) for n in session.get_outputs()], "onnxruntime " + ort.__version__,
                     header.get("ir_version"), header.get("opsets", {}),
                     (" ".join(x for x in (meta.producer_name, header.get("producer_version", ""))
                               if x)), metadata)


def _axis_name(dim) -> str:
    """A dynamic axis' name; exporters write whole formulas for derived axes: "expr" then."""
    text = str(dim) if dim else "?"
    return text if len(text) <= 24 else "expr"


def onnx_header(path: str) -> dict:
    """ir_version, producer_version and opsets from an ONNX ModelProto (fields 1, 3, 8)."""
    with open(path, "rb") as handle:
        data = handle.read()
    found = {"opsets": {}}  # type: dict
    try:
        for number, value in _fields(data):
            if number == 1 and isinstance(value, int):
                found["ir_version"] = value
            elif number == 3 and isinstance(value, bytes):
                found["producer_version"] = value.decode("utf-8", "replace")
            elif number == 8 and isinstance(value, bytes):
                entry = dict(_fields(value))
                domain = entry.get(1, b"")
                found["opsets"][domain.decode("utf-8", "replace") if isinstance(
                    domain, bytes) else ""] = int(entry.get(2, 0))
    except (IndexError, ValueError):
        raise ModelError("%s: not an ONNX model (the protobuf does not parse); re-export it "
                         "with torch.onnx.export" % path)
    if "ir_version" not in found:
        raise ModelError("%s: not an ONNX model (no IR version); re-export it" % path)
    return found


def _varint(data: bytes, pos: int) -> Tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(data: bytes):
    """(field number, int or bytes) of the top level of one protobuf message."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated")
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError("wire type %d" % wire)
        yield number, value


# ---- TFLite and TensorRT: through the backend that runs them ------------------------------------

def _read_with_backend(path: str, size: int, kind: str) -> ModelInfo:
    from .. import backends
    key = BACKEND_OF_FORMAT[kind]
    try:
        backend = backends.load(key, path, {}, path)
    except EdgeAgentError:
        raise
    except (OSError, RuntimeError, ValueError) as why:
        raise ModelError("%s: %s cannot read it: %s" % (path, key, why))
    try:
        runtime = backends.runtime_version(key) or key
        inputs = [_from_spec(backend.input_spec)]
        outputs = [_from_spec(s) for s in backend.output_specs]
    finally:
        backend.close()
    return ModelInfo(path, kind, size, inputs, outputs, str(runtime))


def _from_spec(spec: TensorSpec) -> TensorInfo:
    shape = tuple(d if d >= 0 else "?" for d in spec.shape)
    return TensorInfo(spec.name, shape, spec.dtype, spec.quantization)
