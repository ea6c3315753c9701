"""TensorRT backend: an engine built on this device from the pipeline's ONNX (cached in the state
directory, see agent/backends/tensorrt/engine_build.py), or a prebuilt .engine/.plan loaded as is.

Inference: one pinned host buffer and one device buffer per I/O tensor, allocated once; each
infer() copies the input in, enqueues the engine and the output copies on one CUDA stream and
waits for it. Works with the bindings API (TensorRT 8.0-8.4, JetPack 4.6) and the named-tensor API
(8.5+, the only one in 10.x): agent/backends/tensorrt/io.py.
"""

import logging
import os
from typing import List, Mapping, Optional, Tuple

import numpy as np

from .engine_build import build_engine, ensure_engine
from ...errors import BackendUnavailable, ModelError
from .builder import resolved_input_shape
from .io import IoTensor, api_for
from .options import OPTIONS, TrtOptions  # noqa: F401 - OPTIONS is part of the module API
from .runtime import deserialize, import_tensorrt, make_logger, trt_version
from ...types import BackendInfo, TensorSpec
from .cuda_seam import PycudaSeam, probe_gpu

KEY = "tensorrt"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
log = logging.getLogger(__name__)


def probe() -> Optional[str]:
    """None when tensorrt and pycuda import and a GPU is visible, else the true reason."""
    try:
        import_tensorrt()
    except BackendUnavailable as why:
        return why.detail
    return probe_gpu()


def runtime_version() -> Optional[str]:
    """"TensorRT 8.2.1.8 / NVIDIA Tegra X1 / compute capability 5.3" (GPU part when visible)."""
    text = "TensorRT %s" % trt_version(import_tensorrt())
    if probe_gpu() is not None:
        return text
    seam = PycudaSeam()
    try:
        gpu = seam.gpu_info()
    finally:
        seam.close()
    return "%s / %s / compute capability %s" % (text, gpu.name, gpu.cc)


class TensorRTBackend:
    """One deserialized engine with its execution context, buffers and stream."""

    name = KEY

    def __init__(self, trt, seam: PycudaSeam, runtime, engine, logger, opts: TrtOptions,
                 engine_path: str) -> None:
        self._trt, self._seam, self._runtime, self._engine = trt, seam, runtime, engine
        self._logger = logger
        self._context = engine.create_execution_context()
        if self._context is None:
            raise ModelError("%s: TensorRT cannot create an execution context (%s); the GPU is "
                             "probably out of memory" % (engine_path, logger.last_errors()))
        self._api = api_for(trt, engine, self._context)
        tensors = self._api.tensors()
        inputs = [t for t in tensors if t.is_input]
        if len(inputs) != 1:
            raise ModelError("%s: engine has %d inputs; edgeagent pipelines feed exactly one "
                             "image input" % (engine_path, len(inputs)))
        self._input = inputs[0]
        self._outputs = [t for t in tensors if not t.is_input]
        input_shape = self._fix_input_shape(opts, engine_path)
        self.input_spec = TensorSpec(self._input.name, input_shape, self._input.dtype.name)
        self.output_specs = [TensorSpec(t.name, self._output_shape(t, engine_path), t.dtype.name)
                             for t in self._outputs]
        self._allocate()
        self.engine_path = engine_path
        # the cache entry is keyed by precision, so the loaded engine is built in opts.precision
        self._info = BackendInfo(KEY, opts.precision,
                                 "gpu" if opts.dla_core is None else "dla:%d" % opts.dla_core)
        self.api = self._api.name
        log.info("TensorRT %s engine %s loaded (%s); input %s %s", opts.precision, engine_path,
                 self.api, self.input_spec.name, self.input_spec.shape)

    @property
    def info(self) -> BackendInfo:
        return self._info

    @classmethod
    def from_options(cls, model_path: str, options: Mapping, context) -> "TensorRTBackend":
        opts = TrtOptions.from_context(options, context)
        trt = import_tensorrt()
        seam = PycudaSeam()
        try:
            with seam.active():
                logger = make_logger(trt)
                runtime = trt.Runtime(logger)
                if opts.dla_core is not None:
                    runtime.DLA_core = opts.dla_core
                engine, engine_path = _engine_for(trt, seam, runtime, logger, model_path, opts)
                return cls(trt, seam, runtime, engine, logger, opts, engine_path)
        except BaseException:
            seam.close()
            raise

    def infer(self, tensor: np.ndarray) -> List[np.ndarray]:
        if tuple(tensor.shape) != self.input_spec.shape:
            raise ValueError("tensorrt: input shape %s, the engine takes %s" % (
                tuple(tensor.shape), self.input_spec.shape))
        seam, stream = self._seam, self._stream
        with seam.active():
            np.copyto(self._host_in, tensor, casting="same_kind")
            seam.memcpy_htod_async(self._device_in, self._host_in, stream)
            if not self._api.execute(stream.handle):
                raise RuntimeError("tensorrt: enqueue failed: %s" % self._logger.last_errors())
            for host, device in zip(self._host_out, self._device_out):
                seam.memcpy_dtoh_async(host, device, stream)
            seam.synchronize(stream)
        # copies: the pinned buffers are overwritten by the next call
        return [host.copy() for host in self._host_out]

    def close(self) -> None:
        if self._seam is None:
            return
        with self._seam.active():
            for allocation in [self._device_in] + self._device_out:
                allocation.free()
            # drop pinned buffers and TensorRT objects before the context goes
            self._host_in, self._host_out, self._stream = None, [], None
            self._context = self._engine = self._runtime = self._api = None
        self._seam.close()
        self._seam = None

    def _fix_input_shape(self, opts: TrtOptions, engine_path: str) -> Tuple[int, ...]:
        declared = self._input.shape
        if all(d >= 0 for d in declared):
            return declared
        if opts.input_size is not None:
            shape, _ = resolved_input_shape(declared, opts.input_size, self._input.name,
                                            engine_path, opts.where)
        else:  # an engine with a dynamic input and no input_size runs at its profile's opt shape
            shape = self._api.profile_shapes(self._input)[1]
        if not self._api.set_input_shape(self._input, shape):
            raise ModelError("%s: engine refuses input shape %s for %s (its profile allows %s); "
                             "rebuild it for this input_size" % (
                                 engine_path, shape, self._input.name,
                                 self._api.profile_shapes(self._input)))
        return tuple(shape)

    def _output_shape(self, tensor: IoTensor, engine_path: str) -> Tuple[int, ...]:
        shape = self._api.context_shape(tensor)
        if any(d < 0 for d in shape):
            raise ModelError("%s: output %s has a data-dependent shape %s; edgeagent needs "
                             "outputs whose size follows from the input" % (
                                 engine_path, tensor.name, shape))
        return shape

    def _allocate(self) -> None:
        seam = self._seam
        self._host_in = seam.pagelocked_empty(self.input_spec.shape, self._input.dtype)
        self._device_in = seam.mem_alloc(self._host_in.nbytes)
        self._host_out = [seam.pagelocked_empty(spec.shape, tensor.dtype)
                          for spec, tensor in zip(self.output_specs, self._outputs)]
        self._device_out = [seam.mem_alloc(host.nbytes) for host in self._host_out]
        self._stream = seam.stream()
        addresses = {self._input.name: int(self._device_in)}
        addresses.update((t.name, int(d)) for t, d in zip(self._outputs, self._device_out))
        self._api.bind(addresses)


def _engine_for(trt, seam, runtime, logger, model_path: str, opts: TrtOptions):
    """(engine, path): a prebuilt engine as is, else the cached/built engine for the ONNX."""
    if not os.path.isfile(model_path):
        raise ModelError("%s: model file not found; check the pipeline's models: entry"
                         % model_path)
    if model_path.lower().endswith(ENGINE_SUFFIXES):
        engine = deserialize(trt, runtime, _read(model_path), logger)
        if engine is None:
            raise ModelError(
                "%s: TensorRT %s cannot load this engine (%s); an engine only runs on the "
                "TensorRT version and GPU it was built on: give the pipeline the ONNX model "
                "instead and let edgeagent build it here" % (
                    model_path, trt_version(trt), logger.last_errors()))
        return engine, model_path
    path = ensure_engine(model_path, opts, trt, seam)
    engine = deserialize(trt, runtime, _read(path), logger)
    if engine is None and not opts.build_on_start:
        raise BackendUnavailable("tensorrt: TensorRT refused cached engine %s (%s) and "
                                 "build_on_start is false; rebuild it with `edgeagent build-engine "
                                 "--force`" % (path, logger.last_errors()))
    if engine is None:
        log.warning("TensorRT refused cached engine %s; rebuilding it", path)
        path = build_engine(model_path, opts, force=True, trt=trt, seam=seam)
        engine = deserialize(trt, runtime, _read(path), logger)
    if engine is None:
        raise ModelError("%s: TensorRT %s cannot load the engine it just built (%s)" % (
            path, trt_version(trt), logger.last_errors()))
    return engine, path


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


BACKEND_CLASS = TensorRTBackend
