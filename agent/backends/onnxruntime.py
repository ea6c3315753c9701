"""ONNX Runtime backend: CPU here; CUDA / TensorRT execution providers on Jetson when the
profile lists them and the installed onnxruntime build has them."""

import logging
import os
from typing import List, Mapping, Optional

import numpy as np

from ..checks import need_int, need_list, reject_unknown
from ..errors import BackendUnavailable, ModelError
from ..types import TensorSpec

KEY = "onnxruntime"
OPTIONS = ("providers", "threads", "cache_dir")
log = logging.getLogger(__name__)

_ORT_TYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(uint8)": "uint8",
              "tensor(int8)": "int8", "tensor(int32)": "int32", "tensor(int64)": "int64"}


def _import():
    try:
        import onnxruntime
    except ImportError as why:
        raise BackendUnavailable(
            "onnxruntime: not installed (%s); install with: pip install 'edgeagent[onnx]'" % why)
    return onnxruntime


def probe() -> Optional[str]:
    try:
        _import()
    except BackendUnavailable as why:
        return why.detail
    return None


def runtime_version() -> Optional[str]:
    return _import().__version__


def _spec(node) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else -1 for d in node.shape)
    return TensorSpec(node.name, shape, _ORT_TYPES.get(node.type, node.type))


class OnnxRuntimeBackend:
    """One InferenceSession; outputs returned exactly as the model gives them."""

    name = KEY

    def __init__(self, session, providers: List[str]) -> None:
        self._session = session
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError("model has %d inputs; edgeagent pipelines feed exactly one image input"
                             % len(inputs))
        self.input_spec = _spec(inputs[0])
        self.output_specs = [_spec(o) for o in session.get_outputs()]
        self._output_names = [o.name for o in self.output_specs]
        self.providers = providers
        self.device = "gpu" if any(p != "CPUExecutionProvider" for p in providers) else "cpu"
        self.precision = self.input_spec.dtype

    @classmethod
    def from_options(cls, model_path: str, options: Mapping, where: str) -> "OnnxRuntimeBackend":
        reject_unknown(options, OPTIONS, where, "onnxruntime.")
        ort = _import()
        wanted = need_list(options.get("providers", ["CPUExecutionProvider"]), where,
                           "onnxruntime.providers")
        threads = need_int(options.get("threads", 0), where, "onnxruntime.threads", lo=0)
        have = ort.get_available_providers()
        providers = [p for p in wanted if p in have]
        for missing in (p for p in wanted if p not in have):
            log.info("onnxruntime: provider %s not in this build (has %s)", missing, ", ".join(have))
        if not providers:
            raise BackendUnavailable("onnxruntime: none of the providers %s is in this build (%s)"
                                     % (wanted, ", ".join(have)))
        _check_model_file(model_path)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        try:
            session = ort.InferenceSession(model_path, sess_options=opts,
                                           providers=_with_cache(providers, options))
        except Exception as why:  # ORT raises its own exception types for bad models
            raise ModelError("%s: onnxruntime cannot load it: %s" % (model_path, _first_line(why)))
        return cls(session, session.get_providers())

    def infer(self, tensor: np.ndarray) -> List[np.ndarray]:
        return self._session.run(self._output_names, {self.input_spec.name: tensor})

    def close(self) -> None:
        self._session = None


def _with_cache(providers: List[str], options: Mapping) -> list:
    """TensorRT EP engines go to the state directory so a restart does not rebuild them."""
    cache_dir = options.get("cache_dir")
    if not cache_dir or "TensorrtExecutionProvider" not in providers:
        return providers
    trt = ("TensorrtExecutionProvider", {"trt_engine_cache_enable": True,
                                         "trt_engine_cache_path": cache_dir})
    return [trt if p == "TensorrtExecutionProvider" else p for p in providers]


def _check_model_file(model_path: str) -> None:
    if not os.path.isfile(model_path):
        from ..model_sources import hint_for
        raise ModelError("%s: model file not found; check the pipeline's models: entry%s" % (
            model_path, hint_for(model_path)))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


BACKEND_CLASS = OnnxRuntimeBackend
