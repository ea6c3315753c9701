"""Fake builder: config, build_serialized_network (with INT8 calibration through the
fake pycuda memory and IProgressMonitor calls), and the fake plan format."""

import json
import sys

import numpy as np

from .api import (MAGIC, BuilderFlag, DeviceType, IHostMemory, INetworkDefinition,
                  IOptimizationProfile, ITimingCache, _fake, _Severity, nptype, volume)


class BaseBuilderConfig:
    def __init__(self):
        self._flags = set()
        self._profiles = []
        self._timing_cache = None
        self.int8_calibrator = None
        self.default_device_type = DeviceType.GPU
        self.DLA_core = -1

    def set_flag(self, flag):
        self._flags.add(flag)

    def get_flag(self, flag):
        return flag in self._flags

    def clear_flag(self, flag):
        self._flags.discard(flag)

    def add_optimization_profile(self, profile):
        self._profiles.append(profile)
        return len(self._profiles) - 1

    def create_timing_cache(self, serialized_timing_cache):
        data = bytes(serialized_timing_cache)
        return ITimingCache(json.loads(data.decode()) if data else [])

    def set_timing_cache(self, cache, ignore_mismatch):
        self._timing_cache = cache
        return True

    def get_timing_cache(self):
        return self._timing_cache

    def _workspace(self):
        raise NotImplementedError


class Builder:
    def __init__(self, logger):
        self._logger = logger

    @property
    def platform_has_fast_fp16(self):
        return _fake["fast_fp16"]

    @property
    def platform_has_fast_int8(self):
        return _fake["fast_int8"]

    @property
    def num_DLA_cores(self):
        return _fake["dla_cores"]

    def create_network(self, flags=0):
        return INetworkDefinition(flags)

    def create_optimization_profile(self):
        return IOptimizationProfile()

    def build_serialized_network(self, network, config):
        _fake["builds"] += 1
        _fake["last_config"] = config
        _fake["last_network_flags"] = network._flags
        profile = config._profiles[0]._shapes if config._profiles else {}
        for t in network._inputs:
            if any(d < 0 for d in t.shape) and t.name not in profile:
                self._logger.log(_Severity.ERROR, "Network has dynamic or shape inputs, but no "
                                 "optimization profile has been defined.")
                return None
        config._timing_cache._entries.append("tactics-%d" % _fake["builds"])
        _report_progress(config)
        if BuilderFlag.INT8 in config._flags and not self._calibrate(network, config, profile):
            return None
        return IHostMemory(_serialize_engine(network, config, profile))

    def _calibrate(self, network, config, profile):
        calibrator = config.int8_calibrator
        if calibrator is None:
            self._logger.log(_Severity.ERROR, "Calibration failure: no calibrator")
            return False
        if calibrator.read_calibration_cache():
            return True
        from pycuda import driver
        source = network._inputs[0]
        shape = profile[source.name][1] if source.name in profile else list(source.shape)
        nbytes = volume(shape) * np.dtype(nptype(source.dtype)).itemsize
        calibrator.get_batch_size()
        while True:
            pointers = calibrator.get_batch([source.name])
            if pointers is None:
                break
            data = driver._fake_read(pointers[0], nbytes)
            batch = np.frombuffer(data, nptype(source.dtype)).reshape(shape).copy()
            _fake["calibration_batches"].append(batch)
        if not _fake["calibration_batches"]:
            self._logger.log(_Severity.ERROR, "Calibration failure: no batches")
            return False
        calibrator.write_calibration_cache(IHostMemory(b"fake-calibration-table"))
        return True


def _report_progress(config):
    monitor = getattr(config, "progress_monitor", None)
    if monitor is None:
        return
    monitor.phase_start("Building engine", None, 2)
    monitor.phase_start("Tactic timing", "Building engine", 3)
    for step in range(3):
        monitor.step_complete("Tactic timing", step)
        _fake["progress_phases"].append("Tactic timing %d" % step)
    monitor.phase_finish("Tactic timing")
    monitor.step_complete("Building engine", 1)
    monitor.phase_finish("Building engine")


def _serialize_engine(network, config, profile):
    spec = {"version": sys.modules["tensorrt"].__version__,
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": t.dtype.name,
                        "dim_names": t._dim_names} for t in network._inputs],
            "outputs": [{"name": t.name, "dtype": t.dtype.name,
                         "shape": [n if n else d for d, n in zip(t.shape, t._dim_names)]}
                        for t in network._outputs],
            "profile": profile,
            "flags": sorted(f.name for f in config._flags),
            "plugins": list(network._plugins),
            "workspace": config._workspace(),
            "device": config.default_device_type.name, "dla_core": config.DLA_core}
    return MAGIC + json.dumps(spec).encode()
