"""Importing tensorrt, its version, a logger that feeds Python logging, and loading engines."""

import collections
import logging
from typing import Optional

from ...errors import BackendUnavailable

log = logging.getLogger(__name__)
_LOGGERS = {}  # id(tensorrt module) -> logger

TRT_HINT = ("on Jetson it comes with JetPack (python3-libnvinfer); in a venv create it with "
            "--system-site-packages, see docs/tensorrt.md")


def import_tensorrt():
    """The tensorrt module, or BackendUnavailable with the true reason and the fix."""
    try:
        import tensorrt
    except ImportError as why:
        raise BackendUnavailable("tensorrt: python module not installed (%s); %s" % (why, TRT_HINT))
    except OSError as why:  # the module is there but libnvinfer.so is not loadable
        raise BackendUnavailable("tensorrt: python module found but its libraries do not load "
                                 "(%s); %s" % (why, TRT_HINT))
    return tensorrt


def trt_version(trt) -> str:
    return str(getattr(trt, "__version__", "unknown"))


def trt_major(trt) -> int:
    try:
        return int(trt_version(trt).split(".")[0])
    except ValueError:
        return 0


def make_logger(trt):
    """A trt.ILogger that writes to Python logging and keeps the last errors for messages.

    One per tensorrt module: TensorRT keeps the first logger it is given for the whole process
    and warns when a later Builder or Runtime brings another one.
    """
    logger = _LOGGERS.get(id(trt))
    if logger is None or logger.module is not trt:
        logger = _LOGGERS[id(trt)] = _logger_class(trt)()
    logger.errors.clear()
    return logger


def _logger_class(trt):

    class TrtLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.module = trt
            self.errors = collections.deque(maxlen=5)

        def log(self, severity, msg) -> None:
            level = _level(trt, severity)
            if level >= logging.ERROR:
                self.errors.append(str(msg).strip())
            log.log(level, "TensorRT: %s", msg)

        def last_errors(self) -> str:
            return " | ".join(self.errors) or "TensorRT logged no error"

    return TrtLogger


def _level(trt, severity) -> int:
    levels = trt.ILogger.Severity
    if severity in (levels.INTERNAL_ERROR, levels.ERROR):
        return logging.ERROR
    if severity == levels.WARNING:
        return logging.WARNING
    if severity == levels.INFO:
        return logging.INFO
    return logging.DEBUG


def init_plugins(trt, logger) -> None:
    """Registers TensorRT's bundled plugins (EfficientNMS, BatchedNMS, ...) that some ONNX
    exports use. Needed before parsing such a model *and* before deserializing its engine:
    without it a cached engine with plugin layers is refused and rebuilt on every start (5 to 30
    minutes on a Nano). Registering twice is harmless (NVIDIA's samples call it per builder)."""
    init = getattr(trt, "init_libnvinfer_plugins", None)
    if init is not None:
        init(logger, "")


def deserialize(trt, runtime, data: bytes, logger) -> Optional[object]:
    """The engine, or None when TensorRT refuses the bytes (corrupt, other version or GPU).

    Plugins are registered first, every time, like NVIDIA's samples do before
    deserialize_cuda_engine."""
    init_plugins(trt, logger)
    try:
        engine = runtime.deserialize_cuda_engine(data)
    except (RuntimeError, TypeError, ValueError) as why:  # some releases raise instead of None
        log.warning("TensorRT could not deserialize the engine: %s", why)
        return None
    if engine is None:
        log.warning("TensorRT could not deserialize the engine: %s", logger.last_errors())
    return engine
