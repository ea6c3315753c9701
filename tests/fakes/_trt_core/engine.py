"""Fake runtime, engine and execution context cores: deserialization checks (magic tag,
TensorRT version) and the fake kernel, output k = sum(input * 2 + 1) + k."""

import json
import sys

import numpy as np

from .api import (MAGIC, DataType, Dims, IHostMemory, _fake, _Severity, nptype, plugin_missing,
                  volume)


class Runtime:
    def __init__(self, logger):
        self._logger = logger
        self.DLA_core = -1

    def deserialize_cuda_engine(self, serialized_engine):
        data = bytes(serialized_engine)
        if not data.startswith(MAGIC):
            self._logger.log(_Severity.ERROR, "1: [stdArchiveReader.cpp::StdArchiveReader::40] "
                             "Error Code 1: Serialization (Serialization assertion "
                             "magicTagRead == kMAGIC_TAG failed.Magic tag does not match)")
            return None
        spec = json.loads(data[len(MAGIC):].decode())
        version = sys.modules["tensorrt"].__version__
        if spec["version"] != version:
            self._logger.log(_Severity.ERROR, "The engine plan file is not compatible with this "
                             "version of TensorRT, expecting library version %s got %s, please "
                             "rebuild." % (version, spec["version"]))
            return None
        for op in spec.get("plugins", []):
            missing = plugin_missing(op)
            if missing:   # what TensorRT says when a plugin layer's creator is not registered
                self._logger.log(_Severity.ERROR, missing)
                self._logger.log(_Severity.INTERNAL_ERROR, "Cannot deserialize plugin %s" % op)
                return None
        return self._engine_class(spec)


class EngineCore:
    """What both engine APIs read: tensors in binding order (inputs first, like TensorRT)."""

    def __init__(self, spec):
        self._spec = spec
        self._tensors = [dict(t, is_input=True) for t in spec["inputs"]] + \
                        [dict(t, is_input=False) for t in spec["outputs"]]

    def _find(self, name):
        for t in self._tensors:
            if t["name"] == name:
                return t
        raise KeyError(name)

    def _declared(self, t):
        return Dims(d if isinstance(d, int) else -1 for d in t["shape"])

    def _profile(self, name):
        shapes = self._spec["profile"].get(name)
        if shapes is None:
            fixed = list(self._declared(self._find(name)))
            shapes = [fixed, fixed, fixed]
        return [Dims(s) for s in shapes]

    def serialize(self):
        return IHostMemory(MAGIC + json.dumps(self._spec).encode())


class ContextCore:
    """Input shapes the caller set, output shapes derived from them, and the fake kernel."""

    def __init__(self, engine):
        self._engine = engine
        self._shapes = {}
        self._addresses = {}

    def _set_shape(self, name, shape):
        t = self._engine._find(name)
        lo, _, hi = self._engine._profile(name)
        shape = [int(d) for d in shape]
        if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False
        self._shapes[t["name"]] = shape
        return True

    def _shape(self, name):
        t = self._engine._find(name)
        if t["is_input"]:
            return Dims(self._shapes.get(name, list(self._engine._declared(t))))
        bound = {}
        for i in self._engine._spec["inputs"]:
            actual = self._shapes.get(i["name"], i["shape"])
            for dim_name, value in zip(i["dim_names"], actual):
                if dim_name:
                    bound[dim_name] = value
        return Dims(bound.get(d, -1) if isinstance(d, str) else d for d in t["shape"])

    def _run(self, addresses):
        from pycuda import driver
        if driver.Context.get_current() is None:
            return False    # real TensorRT fails the enqueue without a context on this thread
        source = self._engine._spec["inputs"][0]
        shape = list(self._shape(source["name"]))
        dtype = np.dtype(nptype(DataType[source["dtype"]]))
        data = driver._fake_read(addresses[source["name"]], volume(shape) * dtype.itemsize)
        value = float((np.frombuffer(data, dtype).astype(np.float64) * 2 + 1).sum())
        for k, out in enumerate(self._engine._spec["outputs"]):
            out_shape = list(self._shape(out["name"]))
            result = np.full(out_shape, value + k, nptype(DataType[out["dtype"]]))
            driver._fake_write(addresses[out["name"]], result.tobytes())
        _fake["executions"] = _fake.get("executions", 0) + 1
        return True
