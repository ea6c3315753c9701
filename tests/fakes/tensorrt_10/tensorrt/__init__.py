"""Fake ``tensorrt`` 10.3 (JetPack 6.1): named I/O tensors only — the bindings API is gone.

Same names and signatures as the real 10.x Python API for what edgeagent uses:
ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_mode / get_tensor_shape /
get_tensor_dtype / get_tensor_profile_shape(name, profile_index);
IExecutionContext.set_input_shape / get_tensor_shape / set_tensor_address /
execute_async_v3(stream_handle); IBuilderConfig.set_memory_pool_limit(MemoryPoolType.WORKSPACE, n)
(no max_workspace_size) and IBuilderConfig.progress_monitor with IProgressMonitor.
Shared parts: tests/fakes/_trt_core/.
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
NetworkDefinitionCreationFlag, BuilderFlag = _core.NetworkDefinitionCreationFlag, _core.BuilderFlag
DeviceType, INetworkDefinition = _core.DeviceType, _core.INetworkDefinition


class MemoryPoolType(enum.Enum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    DLA_LOCAL_DRAM = 2
    DLA_GLOBAL_DRAM = 3
    TACTIC_DRAM = 4


class TensorIOMode(enum.Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


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


class IExecutionContext(_core.ContextCore):
    def __init__(self, engine):
        _core.ContextCore.__init__(self, engine)
        self._addresses = {}

    def set_input_shape(self, name, shape):
        return self._set_shape(name, shape)

    def get_tensor_shape(self, name):
        return self._shape(name)

    def set_tensor_address(self, name, memory):
        self._engine._find(name)
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name):
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle):
        names = [t["name"] for t in self._engine._tensors]
        if any(not self._addresses.get(n) for n in names):
            return False
        if any(d < 0 for n in names for d in self._shape(n)):
            return False
        return self._run(self._addresses)


class ICudaEngine(_core.EngineCore):
    @property
    def num_io_tensors(self):
        return len(self._tensors)

    @property
    def num_optimization_profiles(self):
        return 1

    def get_tensor_name(self, index):
        return self._tensors[index]["name"]

    def get_tensor_mode(self, name):
        return TensorIOMode.INPUT if self._find(name)["is_input"] else TensorIOMode.OUTPUT

    def get_tensor_shape(self, name):
        return self._declared(self._find(name))

    def get_tensor_dtype(self, name):
        return DataType[self._find(name)["dtype"]]

    def get_tensor_profile_shape(self, name, profile_index):
        return self._profile(name)

    def create_execution_context(self):
        return IExecutionContext(self)


class Runtime(_core.Runtime):
    _engine_class = ICudaEngine
