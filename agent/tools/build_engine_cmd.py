"""`edgeagent build-engine`: the pipeline's ONNX -> a cached TensorRT engine, ahead of time."""

import logging
import os

from ..config.agent_config import load_config
from ..backends.spec import BackendContext
from ..errors import ConfigError
from ..config.pipeline_spec import load_pipeline
from ..processing.preprocess import Preprocessor
from ..config.profiles import profile_for_this_board

log = logging.getLogger(__name__)


def build_engine_for_pipeline(args) -> str:
    """Path of the valid engine for the pipeline on this device (built when missing)."""
    from ..backends.tensorrt.engine_build import run_build_engine    # TensorRT is imported only for this command
    config = load_config(args.config)
    pipeline = load_pipeline(args.pipeline)
    _, profile, _ = profile_for_this_board(args.profile or config.profile)
    onnx_path = pipeline.model_for("tensorrt")
    if onnx_path is None:
        raise ConfigError("%s: models.tensorrt is not set; name the ONNX file TensorRT builds "
                          "from" % pipeline.path)
    # the service's seam: the profile's options, CLI overrides checked by TrtOptions, one context
    options = profile.options("tensorrt")
    context = BackendContext(pipeline.path, args.cache_dir or os.path.join(config.state_dir,
                                                                           "engines"),
                             pipeline.input_size)
    if args.precision:
        options["precision"] = args.precision
    if args.workspace:
        options["workspace_mb"] = args.workspace
    if args.calibration_dir:
        options["calibration_dir"] = args.calibration_dir
        options["calibration_preprocess"] = _calibration_preprocess(pipeline, onnx_path)
    log.info("building engine for %s (%s) with %s", pipeline.name, onnx_path, profile.name)
    return run_build_engine(onnx_path, options, context, force=args.force)


def _calibration_preprocess(pipeline, onnx_path):
    """INT8 calibration images go through the pipeline's own preprocessing; its input spec is
    read from the ONNX model with ONNX Runtime (CPU)."""
    from ..backends.onnxruntime import OnnxRuntimeBackend
    spec = OnnxRuntimeBackend.from_options(onnx_path, {}, pipeline.path).input_spec
    pre = Preprocessor(pipeline.preprocess, spec, pipeline.input_size)
    return lambda image: pre(image)[0].copy()
