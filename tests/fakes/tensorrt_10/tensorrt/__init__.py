"""Fake ``tensorrt`` 10.3 (JetPack 6.1): named I/O tensors only — the bindings API is gone.

Same names and signatures as the real 10.x Python API for what edgeagent uses (named tensors:
see tests/fakes/_trt_core/apis.py); IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE,
n) (no max_workspace_size) and IBuilderConfig.progress_monitor with IProgressMonitor;
NetworkDefinitionCreationFlag has EXPLICIT_BATCH (deprecated, ignored) and STRONGLY_TYPED, not
8.x's EXPLICIT_PRECISION. Shared parts: tests/fakes/_trt_core/.
"""

import enum
import importlib.util
import os
import sys

# a private copy of the shared fake core (own state), loaded as a package from tests/fakes/
_CORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "_trt_core")
_spec = importlib.util.spec_from_file_location(
    "_fake_trt_core_10", os.path.join(_CORE, "__init__.py"), submodule_search_locations=[_CORE])
_core = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _core
_spec.loader.exec_module(_core)

__version__ = "10.3.0.30"
_fake = _core._fake

ILogger, Logger, DataType, Dims = _core.ILogger, _core.Logger, _core.DataType, _core.Dims
nptype, volume, init_libnvinfer_plugins = _core.nptype, _core.volume, _core.init_libnvinfer_plugins
IHostMemory, OnnxParser, ParserError = _core.IHostMemory, _core.OnnxParser, _core.ParserError
IOptimizationProfile, ITimingCache = _core.IOptimizationProfile, _core.ITimingCache
IInt8EntropyCalibrator2 = _core.IInt8EntropyCalibrator2
NetworkDefinitionCreationFlag = _core.NetworkDefinitionCreationFlag10
BuilderFlag, DeviceType, INetworkDefinition = _core.BuilderFlag, _core.DeviceType, _core.INetworkDefinition
TensorIOMode = _core.TensorIOMode


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4
    TACTIC_SHARED_MEMORY = 5


class IProgressMonitor:
    def __init__(self):
        pass

    def phase_start(self, phase_name, parent_phase, num_steps):
        raise NotImplementedError

    def step_complete(self, phase_name, step):
        raise NotImplementedError

    def phase_finish(self, phase_name):
        raise NotImplementedError


class IBuilderConfig(_core.BaseBuilderConfig):
    def __init__(self):
        _core.BaseBuilderConfig.__init__(self)
        self._pools = {}
        self.progress_monitor = None

    def set_memory_pool_limit(self, pool, pool_size):
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool):
        return self._pools.get(pool, 1 << 40)

    def _workspace(self):
        return self.get_memory_pool_limit(MemoryPoolType.WORKSPACE)


class Builder(_core.Builder):
    def create_builder_config(self):
        return IBuilderConfig()


class IExecutionContext(_core.TensorsContext, _core.ContextCore):
    pass


class ICudaEngine(_core.TensorsEngine, _core.EngineCore):
    @property
    def num_optimization_profiles(self):
        return 1

    def create_execution_context(self):
        return IExecutionContext(self)


class Runtime(_core.Runtime):
    _engine_class = ICudaEngine
