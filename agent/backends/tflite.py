"""TFLite backend: tflite-runtime, else ai-edge-litert, else tensorflow.lite; CPU with XNNPACK.

``xnnpack`` is the interpreter's real switch: XNNPACK is TFLite's *default delegate*, applied
with the AUTO op resolver; ``xnnpack: false`` asks for BUILTIN_WITHOUT_DEFAULT_DELEGATES
(``experimental_op_resolver_type``, in tflite-runtime >= 2.5 and every ai-edge-litert), the plain
builtin kernels.
"""

import logging
import os
import sys
from typing import List, Mapping, Optional

import numpy as np

from ..errors import BackendUnavailable, ModelError
from ..types import BackendInfo, TensorSpec
from . import spec
from .precision import tflite_precision
from .spec import Option

KEY = "tflite"
OPTION_SPECS = (
    Option("threads", 0, spec.count, "interpreter threads, integer >= 0; `0` = one per core"),
    Option("xnnpack", True, spec.boolean,
           "`true`: XNNPACK, TFLite's default CPU delegate; `false`: builtin kernels only "
           "(`experimental_op_resolver_type=BUILTIN_WITHOUT_DEFAULT_DELEGATES`)"),
)
OPTIONS = tuple(o.name for o in OPTION_SPECS)
# the typed options, made from the table (spec.parse fills it once; from_options takes it as is)
TfliteOptions = OPTIONS_CLASS = spec.options_class("TfliteOptions", OPTION_SPECS, __name__)
log = logging.getLogger(__name__)

# tflite-runtime 2.14 (its last release, the only one for Python 3.8 and older boards) cannot load
# models under numpy 2; ai-edge-litert 2.x can. Order = what Pi and Jetson users actually have.
_CANDIDATES = (
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tensorflow.lite.python.interpreter", "tensorflow"),
)


def _load_interpreter():
    """(Interpreter class, runtime name) of the first importable TFLite runtime."""
    reasons = []
    for module_name, dist in _CANDIDATES:
        try:
            module = __import__(module_name, fromlist=["Interpreter"])
        except ImportError as why:
            reasons.append("%s: %s" % (dist, why))
            continue
        if dist == "tflite-runtime" and _numpy_major() >= 2:
            reasons.append("tflite-runtime: needs numpy<2 (numpy %s installed)" % np.__version__)
            continue
        return module.Interpreter, dist
    raise BackendUnavailable("tflite: no TFLite runtime importable (%s); install with: "
                             "pip install 'edgeagent[tflite]'" % "; ".join(reasons))


def interpreter_kwargs(interpreter_cls, threads: int, xnnpack: bool) -> dict:
    """Constructor arguments: threads, and the op resolver that keeps or drops XNNPACK."""
    kwargs = {"num_threads": threads}
    module = sys.modules.get(getattr(interpreter_cls, "__module__", ""))
    resolvers = getattr(module, "OpResolverType", None)
    if not xnnpack:
        if resolvers is None:
            raise BackendUnavailable("tflite: xnnpack: false needs a runtime with "
                                     "OpResolverType (tflite-runtime >= 2.5, ai-edge-litert)")
        kwargs["experimental_op_resolver_type"] = resolvers.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    return kwargs


def _numpy_major() -> int:
    return int(np.__version__.split(".")[0])


def probe() -> Optional[str]:
    try:
        _load_interpreter()
    except BackendUnavailable as why:
        return why.detail
    return None


def runtime_version() -> Optional[str]:
    _, dist = _load_interpreter()
    try:
        from importlib import metadata  # novm: only on 3.8+, guarded
        return "%s %s" % (dist, metadata.version(dist))
    except Exception:  # importlib.metadata missing (3.6/3.7) or dist metadata absent
        return dist


def _spec(detail: dict) -> TensorSpec:
    quant = detail.get("quantization") or (0.0, 0)
    scale, zero = float(quant[0]), int(quant[1])
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    return TensorSpec(detail["name"], shape, np.dtype(detail["dtype"]).name,
                      (scale, zero) if scale else None)


class TFLiteBackend:
    """One interpreter; set_tensor, invoke, get_tensor for each output (copies, since the
    interpreter reuses its buffers on the next invoke)."""

    name = KEY
    device = "cpu"      # the tflite backend runs no delegate that leaves the CPU

    def __init__(self, interpreter, runtime: str) -> None:
        self._it = interpreter
        self._it.allocate_tensors()
        inputs = self._it.get_input_details()
        if len(inputs) != 1:
            raise ModelError("model has %d inputs; edgeagent pipelines feed exactly one image input"
                             % len(inputs))
        self._input_index = inputs[0]["index"]
        self.input_spec = _spec(inputs[0])
        outputs = self._it.get_output_details()
        self._output_indices = [o["index"] for o in outputs]
        self.output_specs = [_spec(o) for o in outputs]
        self.runtime = runtime
        details = self._it.get_tensor_details() if hasattr(self._it, "get_tensor_details") else ()
        self._info = BackendInfo(KEY, tflite_precision(details), self.device)

    @property
    def info(self) -> BackendInfo:
        return self._info

    @classmethod
    def from_options(cls, model_path: str, options: Mapping, context) -> "TFLiteBackend":
        opts = spec.as_dict(spec.parse(TfliteOptions, options, spec.context_of(context).where,
                                       "tflite."))
        threads = opts["threads"] or os.cpu_count() or 1      # 0 = one per core
        interpreter_cls, runtime = _load_interpreter()
        kwargs = interpreter_kwargs(interpreter_cls, threads, opts["xnnpack"])
        if not os.path.isfile(model_path):
            raise ModelError("%s: model file not found; check the pipeline's models: entry"
                             % model_path)
        try:
            interpreter = interpreter_cls(model_path=model_path, **kwargs)
        except (ValueError, RuntimeError) as why:
            raise ModelError("%s: %s cannot load it as a TFLite model: %s" % (
                model_path, runtime,
                (str(why).strip().splitlines() or ["not a valid TFLite flatbuffer"])[0]))
        return cls(interpreter, runtime)

    def infer(self, tensor: np.ndarray) -> List[np.ndarray]:
        self._it.set_tensor(self._input_index, tensor)
        self._it.invoke()
        return [self._it.get_tensor(i).copy() for i in self._output_indices]

    def close(self) -> None:
        self._it = None


BACKEND_CLASS = TFLiteBackend
