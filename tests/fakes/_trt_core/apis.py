"""The two I/O APIs of the real TensorRT Python bindings, as mixins the version fakes compose:

- bindings (8.0-8.6; deprecated in 8.5, removed in 10.0): ICudaEngine.num_bindings /
  get_binding_name / get_binding_index / binding_is_input / get_binding_shape / get_binding_dtype /
  get_profile_shape(profile_index, binding); IExecutionContext.set_binding_shape /
  get_binding_shape / execute_async_v2(bindings, stream_handle);
- named I/O tensors (8.5+): ICudaEngine.num_io_tensors / get_tensor_name / get_tensor_mode /
  get_tensor_shape / get_tensor_dtype / get_tensor_profile_shape(name, profile_index);
  IExecutionContext.set_input_shape / get_tensor_shape / set_tensor_address /
  execute_async_v3(stream_handle).

TensorRT 8.2 (JetPack 4.6) has the first only, 8.5/8.6 (JetPack 5.1, 6.0) both, 10.x the second.
"""

import enum

from .api import DataType


class TensorIOMode(enum.Enum):          # 8.5+
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BindingsEngine:
    @property
    def num_bindings(self):
        return len(self._tensors)

    def get_binding_name(self, index):
        return self._tensors[index]["name"]

    def get_binding_index(self, name):
        for index, t in enumerate(self._tensors):
            if t["name"] == name:
                return index
        return -1

    def _binding(self, binding):
        index = binding if isinstance(binding, int) else self.get_binding_index(binding)
        return self._tensors[index]

    def binding_is_input(self, index):
        return self._binding(index)["is_input"]

    def get_binding_shape(self, index):
        return self._declared(self._binding(index))

    def get_binding_dtype(self, index):
        return DataType[self._binding(index)["dtype"]]

    def get_profile_shape(self, profile_index, binding):
        return self._profile(self._binding(binding)["name"])


class TensorsEngine:
    @property
    def num_io_tensors(self):
        return len(self._tensors)

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


class BindingsContext:
    def _binding_name(self, binding):
        return self._engine.get_binding_name(binding) if isinstance(binding, int) else binding

    def set_binding_shape(self, binding, shape):
        return self._set_shape(self._binding_name(binding), shape)

    def get_binding_shape(self, binding):
        return self._shape(self._binding_name(binding))

    @property
    def all_binding_shapes_specified(self):
        return all(d >= 0 for t in self._engine._tensors for d in self._shape(t["name"]))

    def execute_async_v2(self, bindings, stream_handle, input_consumed=None):
        if len(bindings) != len(self._engine._tensors) or not all(bindings):
            return False
        if not self.all_binding_shapes_specified:
            return False
        return self._run({t["name"]: p for t, p in zip(self._engine._tensors, bindings)})


class TensorsContext:
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
