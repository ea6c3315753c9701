"""Engine inputs and outputs through whichever API the installed TensorRT has.

TensorRT 8.0-8.4 (JetPack 4.6 has 8.2) only know *bindings*: integer indices,
``engine.get_binding_*``, ``context.set_binding_shape`` and ``execute_async_v2(bindings, stream)``.
8.5 added named I/O tensors (``num_io_tensors``, ``get_tensor_*``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and 10.0 removed bindings. One adapter per API,
chosen by what the engine and context actually have.
"""

from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Dict, List, Sequence, Tuple

import numpy as np


@dataclass(frozen=True)
class IoTensor:
    name: str
    index: int                  # binding index (8.x) or I/O tensor index (8.5+)
    is_input: bool
    shape: Tuple[int, ...]      # as the engine declares it: -1 where dynamic
    dtype: np.dtype


def dims(value) -> Tuple[int, ...]:
    """TensorRT Dims (or any sequence of ints) as a tuple."""
    return tuple(int(d) for d in value)


class TensorApi:
    """TensorRT 8.5+ and 10.x: tensors addressed by name."""

    name = "io-tensors (execute_async_v3)"

    def __init__(self, trt, engine, context) -> None:
        self._trt, self._engine, self._context = trt, engine, context

    def tensors(self) -> List[IoTensor]:
        engine, trt = self._engine, self._trt
        found = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            found.append(IoTensor(
                name, index, engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                dims(engine.get_tensor_shape(name)),
                np.dtype(trt.nptype(engine.get_tensor_dtype(name)))))
        return found

    def profile_shapes(self, tensor: IoTensor) -> List[Tuple[int, ...]]:
        return [dims(s) for s in self._engine.get_tensor_profile_shape(tensor.name, 0)]

    def set_input_shape(self, tensor: IoTensor, shape: Sequence[int]) -> bool:
        return bool(self._context.set_input_shape(tensor.name, tuple(shape)))

    def context_shape(self, tensor: IoTensor) -> Tuple[int, ...]:
        return dims(self._context.get_tensor_shape(tensor.name))

    def bind(self, addresses: Dict[str, int]) -> None:
        for name, address in addresses.items():
            self._context.set_tensor_address(name, int(address))

    def execute(self, stream_handle: int) -> bool:
        return bool(self._context.execute_async_v3(stream_handle))


class BindingsApi:
    """TensorRT 8.0-8.4: bindings addressed by index, all pointers passed on every call."""

    name = "bindings (execute_async_v2)"

    def __init__(self, trt, engine, context) -> None:
        self._trt, self._engine, self._context = trt, engine, context
        self._pointers = []  # type: List[int]

    def tensors(self) -> List[IoTensor]:
        engine, trt = self._engine, self._trt
        return [IoTensor(engine.get_binding_name(i), i, bool(engine.binding_is_input(i)),
                         dims(engine.get_binding_shape(i)),
                         np.dtype(trt.nptype(engine.get_binding_dtype(i))))
                for i in range(engine.num_bindings)]

    def profile_shapes(self, tensor: IoTensor) -> List[Tuple[int, ...]]:
        return [dims(s) for s in self._engine.get_profile_shape(0, tensor.index)]

    def set_input_shape(self, tensor: IoTensor, shape: Sequence[int]) -> bool:
        return bool(self._context.set_binding_shape(tensor.index, tuple(shape)))

    def context_shape(self, tensor: IoTensor) -> Tuple[int, ...]:
        return dims(self._context.get_binding_shape(tensor.index))

    def bind(self, addresses: Dict[str, int]) -> None:
        by_name = {t.name: t.index for t in self.tensors()}
        pointers = [0] * len(by_name)
        for name, address in addresses.items():
            pointers[by_name[name]] = int(address)
        self._pointers = pointers

    def execute(self, stream_handle: int) -> bool:
        return bool(self._context.execute_async_v2(self._pointers, stream_handle))


def api_for(trt, engine, context):
    """The named-tensor API where both engine and context have it (8.5+), else bindings."""
    if hasattr(engine, "num_io_tensors") and hasattr(context, "execute_async_v3"):
        return TensorApi(trt, engine, context)
    return BindingsApi(trt, engine, context)
