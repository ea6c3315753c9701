"""TensorRT internals of the ``tensorrt`` backend: options, engine cache, builder, calibrator,
build progress and the engine I/O that speaks both TensorRT 8.x bindings and the 8.5+/10.x
named-tensor API. Nothing here imports tensorrt at module import time: the caller passes the
imported module in, so tests can hand in a fake with the same API."""
