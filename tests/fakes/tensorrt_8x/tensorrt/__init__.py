"""Fake ``tensorrt`` 8.2.1 (JetPack 4.6, Python 3.6): the *bindings* API only.

Same names and signatures as the real 8.2 Python API for what edgeagent uses (bindings: see
tests/fakes/_trt_core/apis.py); IBuilderConfig.max_workspace_size (set_memory_pool_limit came in
8.4); no named I/O tensors (8.5), no IProgressMonitor (10.0). Like the real 8.x ONNX parser it
refuses a network created without the EXPLICIT_BATCH flag. Shared parts: tests/fakes/_trt_core/.
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
NetworkDefinitionCreationFlag = _core.NetworkDefinitionCreationFlag8
BuilderFlag, DeviceType, INetworkDefinition = _core.BuilderFlag, _core.DeviceType, _core.INetworkDefinition


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


class IExecutionContext(_core.BindingsContext, _core.ContextCore):
    def __init__(self, engine):
        _core.ContextCore.__init__(self, engine)
        self.active_optimization_profile = 0


class ICudaEngine(_core.BindingsEngine, _core.EngineCore):
    @property
    def num_optimization_profiles(self):
        return 1

    def create_execution_context(self):
        return IExecutionContext(self)


class Runtime(_core.Runtime):
    _engine_class = ICudaEngine
