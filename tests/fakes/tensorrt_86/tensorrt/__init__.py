"""Fake ``tensorrt`` 8.6.2 (JetPack 6.0; JetPack 5.1's 8.5 has the same API for edgeagent):
*both* I/O APIs, the bindings (deprecated since 8.5) and the named tensors, on one engine and
context; both IBuilderConfig.max_workspace_size (deprecated) and set_memory_pool_limit (8.4+);
no IProgressMonitor (10.0). Like every 8.x parser, it refuses implicit-batch networks.
Shared parts: tests/fakes/_trt_core/.
"""

import enum
import importlib.util
import os
import sys

# a private copy of the shared fake core (own state), loaded as a package from tests/fakes/
_CORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "_trt_core")
_spec = importlib.util.spec_from_file_location(
    "_fake_trt_core_86", os.path.join(_CORE, "__init__.py"), submodule_search_locations=[_CORE])
_core = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _core
_spec.loader.exec_module(_core)

__version__ = "8.6.2.3"
_fake = _core._fake

ILogger, Logger, DataType, Dims = _core.ILogger, _core.Logger, _core.DataType, _core.Dims
nptype, volume, init_libnvinfer_plugins = _core.nptype, _core.volume, _core.init_libnvinfer_plugins
IHostMemory, OnnxParser, ParserError = _core.IHostMemory, _core.OnnxParser, _core.ParserError
IOptimizationProfile, ITimingCache = _core.IOptimizationProfile, _core.ITimingCache
IInt8EntropyCalibrator2 = _core.IInt8EntropyCalibrator2
NetworkDefinitionCreationFlag = _core.NetworkDefinitionCreationFlag8
BuilderFlag, DeviceType, INetworkDefinition = _core.BuilderFlag, _core.DeviceType, _core.INetworkDefinition
TensorIOMode = _core.TensorIOMode


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4


class IBuilderConfig(_core.BaseBuilderConfig):
    def __init__(self):
        _core.BaseBuilderConfig.__init__(self)
        self._pools = {}

    # the deprecated attribute is an alias of the WORKSPACE pool, as in the real bindings
    @property
    def max_workspace_size(self):
        return self.get_memory_pool_limit(MemoryPoolType.WORKSPACE)

    @max_workspace_size.setter
    def max_workspace_size(self, value):
        self.set_memory_pool_limit(MemoryPoolType.WORKSPACE, value)

    def set_memory_pool_limit(self, pool, pool_size):
        self._pools[pool] = int(pool_size)

    def get_memory_pool_limit(self, pool):
        return self._pools.get(pool, 1 << 40)

    def _workspace(self):
        return self.get_memory_pool_limit(MemoryPoolType.WORKSPACE)


class Builder(_core.Builder):
    max_DLA_batch_size = 32

    def create_builder_config(self):
        return IBuilderConfig()


class IExecutionContext(_core.BindingsContext, _core.TensorsContext, _core.ContextCore):
    def __init__(self, engine):
        _core.ContextCore.__init__(self, engine)
        self.active_optimization_profile = 0


class ICudaEngine(_core.BindingsEngine, _core.TensorsEngine, _core.EngineCore):
    @property
    def num_optimization_profiles(self):
        return 1

    def create_execution_context(self):
        return IExecutionContext(self)


class Runtime(_core.Runtime):
    _engine_class = ICudaEngine
