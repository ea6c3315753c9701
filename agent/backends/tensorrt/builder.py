"""ONNX -> serialized TensorRT engine: parser, precision, workspace, DLA, dynamic-shape profile,
timing cache and INT8 calibration. Works with TensorRT 8.2 (JetPack 4.6) up to 10.x."""

import logging
import os
from typing import Optional, Tuple

from ...errors import ConfigError, ModelError
from ...types import FP32, INT8, TensorSpec
from .cache import CacheEntry, write_atomically
from .calibrator import calibration_images, make_calibrator, preprocessed
from .io import dims
from .options import TrtOptions
from .progress import BuildProgress, attach_monitor
from .runtime import trt_major

log = logging.getLogger(__name__)


def build_serialized(trt, seam, logger, onnx_path: str, opts: TrtOptions, entry: CacheEntry,
                     progress: BuildProgress) -> bytes:
    """The serialized engine for onnx_path; ModelError/ConfigError saying why when it fails."""
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    progress.phase("parsing ONNX")
    _parse(parser, onnx_path)
    if network.num_inputs != 1:
        raise ModelError("%s: model has %d inputs; edgeagent pipelines feed exactly one image "
                         "input" % (onnx_path, network.num_inputs))
    net_input = network.get_input(0)
    shape, dynamic = resolved_input_shape(dims(net_input.shape), opts.input_size,
                                          net_input.name, onnx_path, opts.where)
    config = builder.create_builder_config()
    _set_workspace(trt, config, opts.workspace_mb)
    _set_precision(trt, builder, config, opts)
    _set_dla(trt, builder, config, opts)
    if dynamic:
        profile = builder.create_optimization_profile()
        profile.set_shape(net_input.name, shape, shape, shape)
        config.add_optimization_profile(profile)
        log.info("TensorRT: input %s is dynamic %s, engine built for %s",
                 net_input.name, dims(net_input.shape), shape)
    _load_timing_cache(config, entry.timing_cache_path())
    calibrator = None
    if opts.precision == INT8:
        calibrator = _calibrator(trt, seam, opts, entry, shape, net_input, progress)
        config.int8_calibrator = calibrator
    monitor = attach_monitor(trt, config, progress)  # noqa: F841 - must live through the build
    progress.phase("parsing done, %stactic timing" % ("INT8 calibration + " if calibrator else ""))
    serialized = builder.build_serialized_network(network, config)
    if calibrator is not None and calibrator.error is not None:
        raise calibrator.error
    if serialized is None:
        raise ModelError("%s: TensorRT %s could not build an engine: %s" % (
            onnx_path, trt.__version__, logger.last_errors()))
    progress.phase("writing engine")
    _save_timing_cache(config, entry.timing_cache_path())
    return bytes(serialized)


def resolved_input_shape(declared: Tuple[int, ...], input_size: Optional[Tuple[int, int]],
                         name: str, onnx_path: str, where: str) -> Tuple[Tuple[int, ...], bool]:
    """(the shape to build/run with, whether the model input is dynamic).

    Batch -1 becomes 1; dynamic height/width come from the pipeline's input_size. A fixed model
    size that contradicts input_size is an error rather than a silent resize.
    """
    dynamic = any(d < 0 for d in declared)
    if len(declared) != 4:
        if any(d < 0 for d in declared[1:]):
            raise ModelError("%s: input %s has dynamic non-batch dims %s; only image inputs "
                             "(4-D) can be sized by input_size" % (onnx_path, name, declared))
        return (1,) + tuple(declared[1:]) if declared else declared, dynamic
    spec = TensorSpec(name, declared, "float32")
    h_axis, w_axis = (2, 3) if spec.layout == "NCHW" else (1, 2)
    c_axis = 1 if spec.layout == "NCHW" else 3
    if declared[c_axis] < 0:
        raise ModelError("%s: input %s %s has a dynamic channel count"
                         % (onnx_path, name, declared))
    shape = list(declared)
    shape[0] = 1 if shape[0] < 0 else shape[0]
    for axis, wanted, what in ((h_axis, input_size and input_size[0], "height"),
                               (w_axis, input_size and input_size[1], "width")):
        if shape[axis] < 0 and not wanted:
            raise ConfigError("%s: model %s input %s %s has a dynamic %s; set the pipeline's "
                              "input_size: [width, height]" % (where, onnx_path, name,
                                                               declared, what))
        if wanted and shape[axis] >= 0 and shape[axis] != wanted:
            raise ConfigError("%s: input_size %s contradicts model %s, whose input %s is fixed "
                              "at %s; remove input_size or export the model at that size" % (
                                  where, [input_size[1], input_size[0]], onnx_path, name,
                                  declared))   # users write [width, height]
        if wanted:
            shape[axis] = wanted
    return tuple(shape), dynamic


def _network_flags(trt) -> int:
    # TensorRT 10 is always explicit-batch (the flag is deprecated); ONNX needs it before that.
    if trt_major(trt) >= 10:
        return 0
    return 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)


def _parse(parser, onnx_path: str) -> None:
    try:
        with open(onnx_path, "rb") as f:
            data = f.read()
    except OSError as why:
        raise ModelError("%s: cannot read the ONNX model (%s); check the pipeline's models: entry"
                         % (onnx_path, why))
    if not parser.parse(data):
        errors = [str(parser.get_error(i)).strip() for i in range(parser.num_errors)]
        raise ModelError("%s: TensorRT's ONNX parser rejects it: %s" % (
            onnx_path, " | ".join(errors[:3]) or "no parser message"))


def _set_workspace(trt, config, workspace_mb: int) -> None:
    limit = int(workspace_mb) << 20
    if hasattr(config, "set_memory_pool_limit") and hasattr(trt, "MemoryPoolType"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, limit)   # 8.4+
    else:
        config.max_workspace_size = limit                                  # 8.0-8.3


def _set_precision(trt, builder, config, opts: TrtOptions) -> None:
    if opts.precision == FP32:
        return
    if not getattr(builder, "platform_has_fast_fp16", True):
        log.warning("TensorRT: this GPU has no fast FP16; the %s engine will be little faster "
                    "than fp32", opts.precision)
    config.set_flag(trt.BuilderFlag.FP16)   # int8 engines fall back to fp16, not fp32
    if opts.precision == INT8:
        if not getattr(builder, "platform_has_fast_int8", True):
            raise ConfigError("%s: tensorrt precision int8: this GPU has no fast INT8 (Maxwell "
                              "Nano/TX1 and Pascal TX2 do not); use precision fp16" % opts.where)
        config.set_flag(trt.BuilderFlag.INT8)


def _set_dla(trt, builder, config, opts: TrtOptions) -> None:
    if opts.dla_core is None:
        return
    cores = int(getattr(builder, "num_DLA_cores", 0))
    if opts.dla_core >= cores:
        raise ConfigError("%s: tensorrt.dla_core = %d but this device has %d DLA cores (AGX/NX "
                          "Xavier and AGX/NX Orin have them, Nano/TX2/Orin Nano do not); set "
                          "dla_core: null" % (opts.where, opts.dla_core, cores))
    config.default_device_type = trt.DeviceType.DLA
    config.DLA_core = opts.dla_core
    config.set_flag(trt.BuilderFlag.GPU_FALLBACK)   # layers DLA cannot run go to the GPU


def _load_timing_cache(config, path: str) -> None:
    data = b""
    if os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    cache = config.create_timing_cache(data)
    if cache is None or not config.set_timing_cache(cache, False):
        log.warning("TensorRT: timing cache %s unusable, starting an empty one", path)
        config.set_timing_cache(config.create_timing_cache(b""), False)
    elif data:
        log.info("TensorRT: reusing tactic timings from %s", path)


def _save_timing_cache(config, path: str) -> None:
    cache = config.get_timing_cache()
    if cache is not None:
        write_atomically(path, bytes(cache.serialize()))


def _calibrator(trt, seam, opts: TrtOptions, entry: CacheEntry, shape, net_input, progress):
    images = calibration_images(opts.calibration_dir, opts.where)
    if opts.calibration_preprocess is None:
        raise ConfigError("%s: tensorrt precision int8 needs the pipeline's preprocessing "
                          "(calibration_preprocess) to turn calibration images into tensors"
                          % opts.where)
    dtype = trt.nptype(net_input.dtype)
    batches = preprocessed(images, opts.calibration_preprocess, shape, dtype, opts.where)

    def on_batch(count: int) -> None:
        if count % 10 == 0 or count == len(images):
            progress.phase("INT8 calibration %d/%d images" % (count, len(images)))

    return make_calibrator(trt, seam, batches, shape, dtype, entry.calibration_path, on_batch)
