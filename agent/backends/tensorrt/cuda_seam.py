"""The few CUDA calls the TensorRT backend makes, behind one small class.

TensorRT's Python API takes raw device pointers and a stream handle; something else has to
allocate memory and copy. On JetPack that is pycuda (NVIDIA's samples use it, and JetPack 4.6 has
no cuda-python for Python 3.6). Everything goes through PycudaSeam so a CudaPythonSeam with the
same methods could replace it without touching the backend.

The seam works in the device's *primary* context: that is the context the CUDA runtime inside
TensorRT uses too, so pointers from pycuda are valid there, and any thread may use the seam
(``active()`` pushes the context for the calling thread and pops it again).
"""

import contextlib
import logging
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Iterator, Optional, Tuple

import numpy as np

from ...errors import BackendUnavailable

log = logging.getLogger(__name__)

PYCUDA_HINT = ("pip install pycuda inside the venv (on Jetson it compiles against /usr/local/cuda: "
               "export PATH=/usr/local/cuda/bin:$PATH first); see docs/tensorrt.md")


@dataclass(frozen=True)
class GpuInfo:
    """What identifies the GPU an engine is built for (part of the engine cache key)."""

    name: str                              # "NVIDIA Tegra X1", "Orin", "NVIDIA H100 80GB HBM3"
    compute_capability: Tuple[int, int]    # (5, 3) on a Nano, (8, 7) on Orin
    sm_count: int                          # Orin Nano and Orin NX share name and cc, not SMs

    @property
    def cc(self) -> str:
        return "%d.%d" % self.compute_capability


def import_driver():
    """pycuda.driver, or BackendUnavailable saying how to install it."""
    try:
        import pycuda.driver as driver
    except ImportError as why:
        if "libcuda" in str(why):   # pycuda is there, the NVIDIA driver library is not
            raise BackendUnavailable("tensorrt: pycuda cannot load the CUDA driver (%s); no "
                                     "NVIDIA driver on this machine" % why)
        raise BackendUnavailable("tensorrt: pycuda not installed (%s); TensorRT needs it for GPU "
                                 "buffers: %s" % (why, PYCUDA_HINT))
    return driver


def probe_gpu() -> Optional[str]:
    """None when pycuda imports and sees a GPU, else the reason (driver message included)."""
    try:
        driver = import_driver()
    except BackendUnavailable as why:
        return str(why).split(": ", 1)[1]
    try:
        driver.init()
        count = driver.Device.count()
    except driver.Error as why:
        return ("tensorrt: CUDA driver cannot start (%s); check that the user is in the 'video' "
                "group and that /dev/nvhost-* (Jetson) or /dev/nvidia* exist" % why)
    if count < 1:
        return "tensorrt: no CUDA GPU visible (CUDA reports 0 devices)"
    return None


class PycudaSeam:
    """Pinned host buffers, device buffers, a stream and async copies, in the primary context."""

    def __init__(self, device_index: int = 0) -> None:
        self._cuda = import_driver()
        try:
            self._cuda.init()
            self._device = self._cuda.Device(device_index)
            self._context = self._device.retain_primary_context()
        except self._cuda.Error as why:
            raise BackendUnavailable("tensorrt: cannot open CUDA device %d (%s)"
                                     % (device_index, why))

    def gpu_info(self) -> GpuInfo:
        attribute = self._cuda.device_attribute.MULTIPROCESSOR_COUNT
        major, minor = self._device.compute_capability()
        return GpuInfo(str(self._device.name()), (int(major), int(minor)),
                       int(self._device.get_attribute(attribute)))

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """Makes the primary context current on this thread for the duration of the block."""
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def pagelocked_empty(self, shape: Tuple[int, ...], dtype) -> np.ndarray:
        return self._cuda.pagelocked_empty(tuple(shape), np.dtype(dtype))

    def mem_alloc(self, nbytes: int):
        """A device allocation; int(allocation) is the pointer TensorRT wants."""
        return self._cuda.mem_alloc(max(int(nbytes), 1))

    def stream(self):
        """A CUDA stream; ``.handle`` is what execute_async_v2/v3 take."""
        return self._cuda.Stream()

    def memcpy_htod_async(self, device_buffer, host_array: np.ndarray, stream) -> None:
        self._cuda.memcpy_htod_async(device_buffer, host_array, stream)

    def memcpy_dtoh_async(self, host_array: np.ndarray, device_buffer, stream) -> None:
        self._cuda.memcpy_dtoh_async(host_array, device_buffer, stream)

    def synchronize(self, stream) -> None:
        stream.synchronize()

    def close(self) -> None:
        """Lets go of the primary context (the driver frees it when nobody holds it)."""
        if self._context is not None:
            self._context.detach()
            self._context = None
