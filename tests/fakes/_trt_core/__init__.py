"""What the fake TensorRT 8.x and 10.x modules share: the parts of the real Python API whose names
and signatures did not change between them (Logger/ILogger, DataType, nptype, Dims, OnnxParser,
INetworkDefinition, IOptimizationProfile, ITimingCache, IHostMemory, IInt8EntropyCalibrator2,
Builder, Runtime), and the bindings and named-tensor I/O APIs as mixins (apis.py). Each fake package loads its own copy (own state) and adds the
version-specific engine, context and builder config.

The fake "GPU" computes something checkable: every element of output k is
sum(input * 2 + 1) + k, read from and written to the fake pycuda device memory by address.
Test hooks are module attributes starting with ``_fake``; the real API has none of them.
"""

from .api import (MAGIC, PLUGIN_OPS, BuilderFlag, DataType, DeviceType, Dims,  # noqa: F401
                  IHostMemory, IInt8EntropyCalibrator2, ILogger, INetworkDefinition,
                  IOptimizationProfile, ITimingCache, Logger, NetworkDefinitionCreationFlag8,
                  NetworkDefinitionCreationFlag10, OnnxParser, ParserError, _fake,
                  init_libnvinfer_plugins, nptype, volume)
from .apis import (BindingsContext, BindingsEngine, TensorIOMode, TensorsContext,  # noqa: F401
                   TensorsEngine)
from .build import BaseBuilderConfig, Builder  # noqa: F401
from .engine import ContextCore, EngineCore, Runtime  # noqa: F401

