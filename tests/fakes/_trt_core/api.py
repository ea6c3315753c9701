"""Fake TensorRT API types shared by the 8.x and 10.x fakes: logger, data types, Dims,
IHostMemory, network, ONNX parser, optimization profile, timing cache, calibrator base,
flags. ``_fake`` holds the test hooks and counters."""

import enum
import json
import sys

import numpy as np

MAGIC = b"FAKE-TRT-ENGINE\n"
_fake = {"builds": 0, "fast_fp16": True, "fast_int8": True, "dla_cores": 0,
         "last_config": None, "calibration_batches": [], "progress_phases": [],
         "plugins_registered": False, "plugin_inits": 0}

# Ops TensorRT runs as plugins from libnvinfer_plugin (the ONNX parser imports an unknown op
# through the plugin registry): found only after init_libnvinfer_plugins, when parsing *and*
# when deserializing an engine that contains them.
PLUGIN_OPS = {"EfficientNMS_TRT": "1", "BatchedNMSDynamic_TRT": "1", "BatchedNMS_TRT": "1",
              "ScatterND": "1", "GridAnchor_TRT": "1"}


class _Severity(enum.Enum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    Severity = _Severity
    INTERNAL_ERROR, ERROR, WARNING = _Severity.INTERNAL_ERROR, _Severity.ERROR, _Severity.WARNING
    INFO, VERBOSE = _Severity.INFO, _Severity.VERBOSE

    def __init__(self):
        pass

    def log(self, severity, msg):
        raise NotImplementedError("ILogger.log is pure virtual")


class Logger(ILogger):
    def __init__(self, min_severity=_Severity.WARNING):
        ILogger.__init__(self)
        self.min_severity = min_severity

    def log(self, severity, msg):
        if severity.value <= self.min_severity.value:
            sys.stderr.write("[TRT] %s\n" % msg)


def init_libnvinfer_plugins(logger, namespace):
    _fake["plugins_registered"] = True
    _fake["plugin_inits"] += 1
    return True


def plugin_missing(op):
    """The real registry's complaint for a plugin op that was never registered, else None."""
    if op in PLUGIN_OPS and not _fake["plugins_registered"]:
        return ("getPluginCreator could not find plugin: %s version: %s" % (op, PLUGIN_OPS[op]))
    return None


class DataType(enum.Enum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
       DataType.INT32: np.int32, DataType.BOOL: np.bool_}
_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32,
               9: DataType.BOOL}


def nptype(trt_type):
    return _NP[trt_type]


def volume(iterable):
    total = 1
    for d in iterable:
        total *= d
    return total


class Dims:
    """Like tensorrt.Dims: iterable, indexable, has len; not a tuple."""

    def __init__(self, shape=()):
        self._d = tuple(int(d) for d in shape)

    def __len__(self):
        return len(self._d)

    def __getitem__(self, i):
        return self._d[i]

    def __iter__(self):
        return iter(self._d)

    def __eq__(self, other):
        return tuple(self) == tuple(other)

    def __repr__(self):
        return "(%s)" % ", ".join(str(d) for d in self._d)


class IHostMemory(bytes):
    """Real IHostMemory exposes the buffer protocol; a bytes subclass is the closest in Python."""

    @property
    def nbytes(self):
        return len(self)


class ITensor:
    def __init__(self, name, shape, dtype, dim_names):
        self.name, self.shape, self.dtype, self._dim_names = name, Dims(shape), dtype, dim_names


class INetworkDefinition:
    def __init__(self, flags):
        self._flags, self._inputs, self._outputs, self._plugins = flags, [], [], []

    @property
    def num_inputs(self):
        return len(self._inputs)

    @property
    def num_outputs(self):
        return len(self._outputs)

    def get_input(self, index):
        return self._inputs[index]

    def get_output(self, index):
        return self._outputs[index]


class ParserError:
    def __init__(self, desc):
        self._desc = desc

    def desc(self):
        return self._desc

    def code(self):
        return 1

    def node(self):
        return -1

    def __str__(self):
        return "In node -1 (parseGraph): INVALID_GRAPH: %s" % self._desc


class OnnxParser:
    """Reads the real ONNX graph's inputs and outputs (names, dims, dim_params, types)."""

    def __init__(self, network, logger):
        self._network, self._logger, self._errors = network, logger, []

    @property
    def num_errors(self):
        return len(self._errors)

    def get_error(self, index):
        return self._errors[index]

    def parse(self, model, path=None):
        import onnx
        if not _explicit_batch(self._network):
            # the real 8.x parser's assertion, word for word in substance
            self._errors.append(ParserError(
                "Assertion failed: !mImporterCtx.network()->hasImplicitBatchDimension() && "
                "\"This version of the ONNX parser only supports TensorRT INetworkDefinitions "
                "with an explicit batch dimension. Please ensure the network was initialized "
                "with the EXPLICIT_BATCH NetworkDefinitionCreationFlag.\""))
            return False
        try:
            graph = onnx.load_from_string(bytes(model)).graph
        except Exception as why:
            self._errors.append(ParserError("Failed to parse ONNX model: %s" % why))
            return False
        for node in graph.node:
            missing = plugin_missing(node.op_type)
            if missing:
                self._logger.log(_Severity.ERROR, missing)
                self._errors.append(ParserError(
                    "No importer registered for op: %s. Attempted to import as plugin: "
                    "Plugin not found, are the plugin name, version, and namespace correct?"
                    % node.op_type))
                return False
            if node.op_type in PLUGIN_OPS:
                self._network._plugins.append(node.op_type)
        self._network._inputs[:] = [_tensor(v) for v in graph.input]
        self._network._outputs[:] = [_tensor(v) for v in graph.output]
        return True


def _explicit_batch(network):
    """TensorRT 10 networks are always explicit batch; before, the creation flag decides."""
    if int(sys.modules["tensorrt"].__version__.split(".")[0]) >= 10:
        return True
    return bool(network._flags & (1 << 0))     # 1 << EXPLICIT_BATCH


def _tensor(value):
    dims = value.type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    names = [d.dim_param if d.HasField("dim_param") else None for d in dims]
    return ITensor(value.name, shape, _ONNX_TYPES[value.type.tensor_type.elem_type], names)


class IOptimizationProfile:
    def __init__(self):
        self._shapes = {}

    def set_shape(self, input, min, opt, max):
        self._shapes[input] = [list(min), list(opt), list(max)]

    def get_shape(self, input):
        return [Dims(s) for s in self._shapes[input]]


class ITimingCache:
    def __init__(self, entries):
        self._entries = list(entries)

    def serialize(self):
        return IHostMemory(json.dumps(self._entries).encode())

    def combine(self, input_cache, ignore_mismatch):
        self._entries += input_cache._entries
        return True

    def reset(self):
        self._entries = []
        return True


class IInt8EntropyCalibrator2:
    def __init__(self):
        pass

    def get_batch_size(self):
        raise NotImplementedError

    def get_batch(self, names):
        raise NotImplementedError

    def read_calibration_cache(self):
        raise NotImplementedError

    def write_calibration_cache(self, cache):
        raise NotImplementedError


class NetworkDefinitionCreationFlag8(enum.IntEnum):
    """TensorRT 8.x: EXPLICIT_PRECISION is deprecated there and gone in 10.0."""
    EXPLICIT_BATCH = 0
    EXPLICIT_PRECISION = 1


class NetworkDefinitionCreationFlag10(enum.IntEnum):
    """TensorRT 10.x: EXPLICIT_BATCH is deprecated and ignored (always explicit batch)."""
    EXPLICIT_BATCH = 0
    STRONGLY_TYPED = 1


class BuilderFlag(enum.Enum):
    FP16 = 0
    INT8 = 1
    DEBUG = 2
    GPU_FALLBACK = 3
    REFIT = 5


class DeviceType(enum.Enum):
    GPU = 0
    DLA = 1
