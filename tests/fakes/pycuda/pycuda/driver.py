"""Fake ``pycuda.driver`` with the real names and signatures edgeagent uses: init, Device (count,
name, compute_capability, get_attribute, retain_primary_context), Context (push, pop, detach),
device_attribute, mem_alloc -> DeviceAllocation (int(), free), pagelocked_empty, Stream (handle,
synchronize), memcpy_htod_async / memcpy_dtoh_async (dest, src, stream=None), Error classes.

"Device memory" is a dict of bytearrays keyed by address, so the fake TensorRT reads inputs and
writes outputs through the very pointers the backend hands it. Like the real driver, allocations
and copies fail without a current context, and the context stack is per *thread* (CUDA keeps one
per host thread): a context pushed on one thread is not current on another. That checks the
seam's push/pop discipline wherever inference runs.
Test hooks start with ``_fake``.
"""

import builtins
import threading

import numpy as np

_fake = {"devices": [("NVIDIA Tegra X1", (5, 3), 1)], "init_error": None,
         "pushes": 0, "retained": 0, "memory": {}, "next": 0x7f0000000000, "freed": 0}
_threads = threading.local()


def _stack():
    """This thread's context stack (CUDA's is per host thread)."""
    if not hasattr(_threads, "stack"):
        _threads.stack = []
    return _threads.stack


class Error(Exception):
    pass


class LogicError(Error):
    pass


class RuntimeError(Error, builtins.RuntimeError):
    pass


class MemoryError(Error, builtins.MemoryError):
    pass


def init(flags=0):
    if _fake["init_error"]:
        raise RuntimeError("cuInit failed: %s" % _fake["init_error"])


def get_version():
    return (10, 2, 0)


def get_driver_version():
    return 10020


class device_attribute:
    MULTIPROCESSOR_COUNT = "MULTIPROCESSOR_COUNT"
    COMPUTE_CAPABILITY_MAJOR = "COMPUTE_CAPABILITY_MAJOR"
    COMPUTE_CAPABILITY_MINOR = "COMPUTE_CAPABILITY_MINOR"


class Context:
    def __init__(self, device):
        self._device = device

    def push(self):
        _stack().append(self)
        _fake["pushes"] += 1

    @staticmethod
    def pop():
        if not _stack():
            raise LogicError("cuCtxPopCurrent failed: invalid device context")
        _stack().pop()

    def detach(self):
        _fake["retained"] -= 1

    @staticmethod
    def get_current():
        return _stack()[-1] if _stack() else None


class Device:
    def __init__(self, number):
        if not 0 <= number < len(_fake["devices"]):
            raise LogicError("cuDeviceGet failed: invalid device ordinal")
        self._number = number

    @staticmethod
    def count():
        return len(_fake["devices"])

    def name(self):
        return _fake["devices"][self._number][0]

    def compute_capability(self):
        return _fake["devices"][self._number][1]

    def get_attribute(self, attr):
        if attr == device_attribute.MULTIPROCESSOR_COUNT:
            return _fake["devices"][self._number][2]
        raise LogicError("attribute %s not faked" % attr)

    def retain_primary_context(self):
        _fake["retained"] += 1
        return Context(self)


def _need_context(what):
    if not _stack():
        raise LogicError("%s failed: invalid device context" % what)


class DeviceAllocation:
    def __init__(self, address, nbytes):
        self._address, self.nbytes = address, nbytes

    def __int__(self):
        return self._address

    __index__ = __int__

    def free(self):
        _need_context("cuMemFree")
        _fake["memory"].pop(self._address, None)
        _fake["freed"] += 1


def mem_alloc(bytes):
    _need_context("cuMemAlloc")
    address = _fake["next"]
    _fake["next"] += (int(bytes) + 255) // 256 * 256 + 256
    _fake["memory"][address] = bytearray(int(bytes))
    return DeviceAllocation(address, int(bytes))


def pagelocked_empty(shape, dtype, order="C", mem_flags=0):
    _need_context("cuMemHostAlloc")
    return np.empty(shape, dtype, order=order)


class Stream:
    def __init__(self, flags=0):
        _need_context("cuStreamCreate")
        self.handle = 0x5000 + len(_fake["memory"])

    def synchronize(self):
        _need_context("cuStreamSynchronize")

    def is_done(self):
        return True


def memcpy_htod_async(dest, src, stream=None):
    _need_context("cuMemcpyHtoDAsync")
    data = np.ascontiguousarray(src).tobytes()
    _fake_write(int(dest), data)


def memcpy_dtoh_async(dest, src, stream=None):
    _need_context("cuMemcpyDtoHAsync")
    flat = dest.reshape(-1).view(np.uint8)
    flat[...] = np.frombuffer(_fake_read(int(src), flat.nbytes), np.uint8)


def memcpy_htod(dest, src):
    memcpy_htod_async(dest, src)


def _fake_read(address, nbytes):
    buffer = _fake["memory"][int(address)]
    if nbytes > len(buffer):
        raise LogicError("read of %d bytes from a %d-byte allocation" % (nbytes, len(buffer)))
    return bytes(buffer[:nbytes])


def _fake_write(address, data):
    buffer = _fake["memory"][int(address)]
    if len(data) > len(buffer):
        raise LogicError("write of %d bytes into a %d-byte allocation" % (len(data), len(buffer)))
    buffer[:len(data)] = data
