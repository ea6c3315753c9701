"""Read a PyTorch state_dict (.pth) into numpy arrays WITHOUT torch.

Handles both files torch.save writes: the zip format (torch >= 1.6) and the legacy
pickle-stream format (older files such as efficientnet-lite0-57934424.pth). Only tensors and
OrderedDicts are rebuilt; any other pickled class is refused, so no code from the file runs.
"""

import collections
import io
import pickle
import struct
import zipfile
from typing import Dict, Tuple

import numpy as np

_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16,
    "CharStorage": np.int8, "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _TensorRef(object):
    """Where a tensor's numbers are: storage key, offset and shape/stride in elements."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage          # (dtype, key)
        self.offset = int(offset)
        self.size = tuple(int(s) for s in size)
        self.stride = tuple(int(s) for s in stride)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _TensorRef(storage, offset, size, stride)


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        raise pickle.UnpicklingError("refusing to load %s.%s from a checkpoint" % (module, name))

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        return (pid[1], str(pid[2]))


def _materialize(ref: _TensorRef, storages: Dict[str, np.ndarray]) -> np.ndarray:
    flat = storages[ref.storage[1]]
    if not ref.size:
        return flat[ref.offset:ref.offset + 1].reshape(()).copy()
    item = flat.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset:], shape=ref.size, strides=tuple(s * item for s in ref.stride))
    return np.array(view)


def _load_zip(path: str) -> Dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pkl = next(n for n in names if n.endswith("data.pkl"))
        prefix = pkl[:-len("data.pkl")]
        state = _SafeUnpickler(io.BytesIO(archive.read(pkl))).load()
        storages = {}
        for value in state.values():
            dtype, key = value.storage
            if key not in storages:
                raw = archive.read("%sdata/%s" % (prefix, key))
                storages[key] = np.frombuffer(raw, dtype=dtype)
    return collections.OrderedDict((k, _materialize(v, storages)) for k, v in state.items())


def _load_legacy(path: str) -> Dict[str, np.ndarray]:
    with open(path, "rb") as handle:
        if pickle.load(handle) != _LEGACY_MAGIC:
            raise ValueError("%s is not a PyTorch checkpoint" % path)
        pickle.load(handle)                       # protocol version
        pickle.load(handle)                       # sys info
        state = _SafeUnpickler(handle).load()
        keys = pickle.load(handle)
        dtypes: Dict[str, type] = {}
        for value in state.values():
            dtypes[value.storage[1]] = value.storage[0]
        storages = {}
        for key in keys:
            count = struct.unpack("<q", handle.read(8))[0]
            dtype = np.dtype(dtypes[key])
            storages[key] = np.frombuffer(handle.read(count * dtype.itemsize), dtype=dtype)
    return collections.OrderedDict((k, _materialize(v, storages)) for k, v in state.items())


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
    """name -> numpy array for every tensor in the checkpoint at `path`."""
    if zipfile.is_zipfile(path):
        return _load_zip(path)
    return _load_legacy(path)


def shapes(state: Dict[str, np.ndarray]) -> Dict[str, Tuple[int, ...]]:
    return collections.OrderedDict((k, tuple(v.shape)) for k, v in state.items())
