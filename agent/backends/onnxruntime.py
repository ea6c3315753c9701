"""ONNX Runtime backend: CPU here; CUDA / TensorRT execution providers on Jetson when the
profile lists them and the installed onnxruntime build has them.

Options (OPTION_SPECS below, the one place their defaults and checks live): providers, threads,
spinning (intra-op threads busy-wait between runs: off by default, since at camera rate the
session idles between frames and spinning burns a core for nothing), and the GPU providers'
fp16, trt_workspace_mb and device_id. The TensorRT provider's engine cache is the context's
cache_dir (the service's <state_dir>/engines).
"""

import logging
import os
from typing import List, Mapping, Optional

import numpy as np

from ..checks import need_choice
from ..errors import BackendUnavailable, ModelError
from ..types import BackendInfo, TensorSpec
from . import spec
from .precision import onnx_precision
from .spec import Option

KEY = "onnxruntime"
# graph_optimization value -> ort.GraphOptimizationLevel member
GRAPH_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC",
                "extended": "ORT_ENABLE_EXTENDED", "all": "ORT_ENABLE_ALL"}
TRT_EP, CUDA_EP, CPU_EP = ("TensorrtExecutionProvider", "CUDAExecutionProvider",
                           "CPUExecutionProvider")
OPTION_SPECS = (
    Option("providers", (CPU_EP,), spec.names,
           "execution providers, preferred first; the backend skips those the installed "
           "onnxruntime lacks"),
    Option("threads", 0, spec.count, "intra-op threads, integer >= 0; `0` lets the runtime decide"),
    Option("spinning", False, spec.boolean,
           "`true` lets intra-op threads busy-wait between runs (lowest latency at full load); "
           "`false` sleeps them (camera rate: 8.3 % of a core instead of 18.8 %)"),
    Option("fp16", True, spec.boolean,
           "TensorRT provider builds FP16 engines (`trt_fp16_enable`); `false` = fp32"),
    Option("trt_workspace_mb", 256, spec.positive,
           "TensorRT provider's builder workspace in MiB (`trt_max_workspace_size`)"),
    Option("device_id", 0, spec.count, "CUDA device of the TensorRT and CUDA providers"),
    Option("graph_optimization", "all", lambda value, path, key: need_choice(
        value, tuple(GRAPH_LEVELS), path, key),
           "graph optimizations before the first run: `disable`, `basic`, `extended`, `all` "
           "(`basic` if a fused op misbehaves on this build)"),
)
OPTIONS = tuple(o.name for o in OPTION_SPECS)
# the typed options, made from the table (the profile parses into it once; from_options takes
# an instance as it is)
OrtOptions = OPTIONS_CLASS = spec.options_class("OrtOptions", OPTION_SPECS, __name__)
SPINNING_KEYS = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
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

    def __init__(self, session, providers: List[str], model_path: str = "",
                 precision: Optional[str] = None) -> None:
        self._session = session
        inputs = session.get_inputs()
        if len(inputs) != 1:
            raise ModelError("model has %d inputs; edgeagent pipelines feed exactly one image input"
                             % len(inputs))
        self.input_spec = _spec(inputs[0])
        self.output_specs = [_spec(o) for o in session.get_outputs()]
        self._output_names = [o.name for o in self.output_specs]
        self.providers = providers
        device = "gpu" if any(p != CPU_EP for p in providers) else "cpu"
        self._info = BackendInfo(KEY, precision or onnx_precision(model_path, False, ""), device)

    @property
    def info(self) -> BackendInfo:
        return self._info

    @classmethod
    def from_options(cls, model_path: str, options: Mapping, context) -> "OnnxRuntimeBackend":
        context = spec.context_of(context)
        opts = spec.as_dict(spec.parse(OrtOptions, options, context.where, "onnxruntime."))
        opts["cache_dir"] = context.cache_dir       # the TensorRT EP's engines, the service's
        ort = _import()
        wanted = list(opts["providers"])
        have = ort.get_available_providers()
        providers = [p for p in wanted if p in have]
        for missing in (p for p in wanted if p not in have):
            log.info("onnxruntime: provider %s not in this build (has %s)", missing, ", ".join(have))
        if not providers:
            raise BackendUnavailable("onnxruntime: none of the providers %s is in this build (%s)"
                                     % (wanted, ", ".join(have)))
        _check_model_file(model_path)
        try:
            session = ort.InferenceSession(model_path, sess_options=session_options(ort, opts),
                                           providers=provider_settings(providers, opts))
        except Exception as why:  # ORT raises its own exception types for bad models
            raise ModelError("%s: onnxruntime cannot load it: %s" % (model_path, _first_line(why)))
        return cls(session, session.get_providers(), model_path, _precision(session, model_path))

    def infer(self, tensor: np.ndarray) -> List[np.ndarray]:
        return self._session.run(self._output_names, {self.input_spec.name: tensor})

    def close(self) -> None:
        self._session = None


def session_options(ort, opts: Mapping):
    """SessionOptions with the profile's threads and spinning (off unless the profile says so)."""
    session = ort.SessionOptions()
    session.intra_op_num_threads = opts["threads"]
    session.log_severity_level = 3
    session.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                               GRAPH_LEVELS[opts["graph_optimization"]])
    for key in SPINNING_KEYS:
        session.add_session_config_entry(key, "1" if opts["spinning"] else "0")
    return session


def provider_settings(providers: List[str], opts: Mapping) -> list:
    """(name, options) for the GPU providers, plain names for the others.

    TensorRT EP: fp16 and workspace from the profile; its engines go to the state directory so a
    restart does not rebuild them. CUDA EP: the device. ORT's option values are strings or
    numbers; booleans as "True"/"False" strings are what every release since 1.8 parses.
    """
    settings = []   # type: list
    for name in providers:
        if name == TRT_EP:
            trt = {"device_id": opts["device_id"],
                   "trt_fp16_enable": str(bool(opts["fp16"])),
                   "trt_max_workspace_size": int(opts["trt_workspace_mb"]) << 20}
            if opts.get("cache_dir"):
                trt.update(trt_engine_cache_enable="True",
                           trt_engine_cache_path=str(opts["cache_dir"]))
            settings.append((name, trt))
        elif name == CUDA_EP:
            settings.append((name, {"device_id": opts["device_id"]}))
        else:
            settings.append(name)
    return settings


def _precision(session, model_path: str) -> str:
    meta = session.get_modelmeta().custom_metadata_map
    dtype = _ORT_TYPES.get(session.get_inputs()[0].type, "") if session.get_inputs() else ""
    return onnx_precision(model_path, bool(meta.get("edgeagent_quantization")), dtype)


def _check_model_file(model_path: str) -> None:
    if not os.path.isfile(model_path):
        from .model_sources import hint_for
        raise ModelError("%s: model file not found; check the pipeline's models: entry%s" % (
            model_path, hint_for(model_path)))


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


BACKEND_CLASS = OnnxRuntimeBackend
