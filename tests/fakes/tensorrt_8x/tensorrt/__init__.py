"""Fake ``tensorrt`` 8.2.1 (JetPack 4.6, Python 3.6): the *bindings* API only.

Same names and signatures as the real 8.2 Python API for what edgeagent uses:
ICudaEngine.num_bindings / get_binding_name / get_binding_index / binding_is_input /
get_binding_shape / get_binding_dtype / get_profile_shape(profile_index, binding);
IExecutionContext.set_binding_shape / get_binding_shape / execute_async_v2(bindings, stream_handle);
IBuilderConfig.max_workspace_size (set_memory_pool_limit came in 8.4); no named I/O tensors
(8.5), no IProgressMonitor (10.0). Shared parts: tests/fakes/_trt_core/.
"""

import importlib.util
import os
import sys

# a private copy of the shared fake core (own state), loaded as a package from tests/fakes/
_CORE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "_trt_core")
_spec = importlib.util.spec_from_file_location(
    "_fake_trt_core_8x", os.path.join(_CORE, "__init__.py"), submodule_search_locations=[_CORE])
_core = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _core
_spec.loader.exec_module(_core)

__version__ = "8.2.1.8"
_fake = _core._fake

ILogger, Logger, DataType, Dims = _core.ILogger, _core.Logger, _core.DataType, _core.Dims
nptype, volume, init_libnvinfer_plugins = _core.nptype, _core.volume, _core.init_libnvinfer_plugins
IHostMemory, OnnxParser, ParserError = _core.IHostMemory, _core.OnnxParser, _core.ParserError
IOptimizationProfile, ITimingCache = _core.IOptimizationProfile, _core.ITimingCache
IInt8EntropyCalibrator2 = _core.IInt8EntropyCalibrator2
NetworkDefinitionCreationFlag, BuilderFlag = _core.NetworkDefinitionCreationFlag, _core.BuilderFlag
DeviceType, INetworkDefinition = _core.DeviceType, _core.INetworkDefinition


class IBuilderConfig(_core.BaseBuilderConfig):
    def __init__(self):
        _core.BaseBuilderConfig.__init__(self)
        self.max_workspace_size = 0

    def _workspace(self):
        return self.max_workspace_size


class Builder(_core.Builder):
    max_DLA_batch_size = 32

    def create_builder_config(self):
        return IBuilderConfig()


class IExecutionContext(_core.ContextCore):
    def __init__(self, engine):
        _core.ContextCore.__init__(self, engine)
        self.active_optimization_profile = 0

    def _name(self, binding):
        return self._engine.get_binding_name(binding) if isinstance(binding, int) else binding

    def set_binding_shape(self, binding, shape):
        return self._set_shape(self._name(binding), shape)

    def get_binding_shape(self, binding):
        return self._shape(self._name(binding))

    @property
    def all_binding_shapes_specified(self):
        return all(d >= 0 for t in self._engine._tensors for d in self._shape(t["name"]))

    def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
        if len(bindings) != self._engine.num_bindings or not all(bindings):
            return False
        if not self.all_binding_shapes_specified:
            return False
        return self._run({t["name"]: p for t, p in zip(self._engine._tensors, bindings)})


class ICudaEngine(_core.EngineCore):
    @property
    def num_bindings(self):
        return len(self._tensors)

    @property
    def num_optimization_profiles(self):
        return 1

    def get_binding_name(self, index):
        return self._tensors[index]["name"]

    def get_binding_index(self, name):
        for index, t in enumerate(self._tensors):
            if t["name"] == name:
                return index
        return -1

    def _tensor(self, binding):
        index = binding if isinstance(binding, int) else self.get_binding_index(binding)
        return self._tensors[index]

    def binding_is_input(self, index):
        return self._tensor(index)["is_input"]

    def get_binding_shape(self, index):
        return self._declared(self._tensor(index))

    def get_binding_dtype(self, index):
        return DataType[self._tensor(index)["dtype"]]

    def get_profile_shape(self, profile_index, binding):
        return self._profile(self._tensor(binding)["name"])

    def create_execution_context(self):
        return IExecutionContext(self)


class Runtime(_core.Runtime):
    _engine_class = ICudaEngine
