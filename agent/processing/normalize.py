"""Fused pixel -> tensor kernels: one pass from the uint8 BGR canvas into the model's tensor.

Every supported input is a per-channel affine map of the uint8 pixel, so each kernel is one
OpenCV call per plane: ``cv2.addWeighted`` (value = pixel * alpha + beta, converted on the fly)
for float32, and a 256-entry lookup table (``cv2.LUT``) where rounding and clipping must be
exact (quantized int8/uint8) or the channels differ in NHWC. float16 tensors are filled through
a float32 scratch buffer: not every OpenCV build a device ships has 16-bit float kernels.
"""

from typing import Callable, List, Optional, Sequence, Tuple

import cv2
import numpy as np

Kernel = Callable[[np.ndarray, np.ndarray, np.ndarray], None]   # (canvas, roi, out) -> None


def channel_affine(mean: Sequence[float], std: Sequence[float],
                   quantization: Optional[Tuple[float, int]]) -> List[Tuple[float, float]]:
    """(alpha, beta) per model channel so that value = pixel * alpha + beta.

    Float: (x - mean) / std. Quantized: round((x - mean) / std / scale + zero_point), so the
    quantized model sees what the float model it came from would have seen.
    """
    pairs = []
    for m, s in zip(mean, std):
        alpha, beta = 1.0 / s, -m / s
        if quantization is not None:
            scale, zero_point = quantization
            alpha, beta = alpha / scale, beta / scale + zero_point
        pairs.append((alpha, beta))
    return pairs


def lookup_table(alpha: float, beta: float, dtype: np.dtype) -> np.ndarray:
    """The value of every possible pixel 0..255, rounded (half to even) and clipped for ints."""
    values = np.arange(256, dtype=np.float64) * alpha + beta
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values), info.min, info.max)
    return values.astype(dtype)


def make_kernel(layout: str, dtype: np.dtype, swap_rb: bool,
                affine: Optional[List[Tuple[float, float]]]) -> Kernel:
    """The kernel that writes a letterboxed BGR canvas into the (batch-less) output tensor.

    affine None means raw pixels (uint8 model without quantization parameters).
    """
    if layout == "NCHW":
        return _nchw_kernel(dtype, swap_rb, affine)
    return _nhwc_kernel(dtype, swap_rb, affine)


def _source_channel(model_channel: int, swap_rb: bool) -> int:
    return 2 - model_channel if swap_rb else model_channel


def _nchw_kernel(dtype: np.dtype, swap_rb: bool, affine) -> Kernel:
    # model channel c comes from canvas channel sources[c]; one cv2.split does all three.
    sources = [_source_channel(c, swap_rb) for c in range(3)]
    if affine is None:
        def raw(canvas, roi, out):
            targets = [out[sources.index(src)] for src in range(3)]
            for got, dst in zip(cv2.split(canvas, targets), targets):
                _into(got, dst)
        return raw
    if dtype == np.float16:
        return _via_float32_scratch(_nchw_kernel(np.dtype(np.float32), swap_rb, affine))
    split = _Splitter()
    if dtype == np.float32:
        def affine_planes(canvas, roi, out):
            planes = split(canvas)
            for src, (alpha, beta), dst in zip(sources, affine, out):
                plane = planes[src]
                got = cv2.addWeighted(plane, alpha, plane, 0.0, beta, dst=dst, dtype=cv2.CV_32F)
                _into(got, dst)
        return affine_planes
    tables = [lookup_table(alpha, beta, dtype) for alpha, beta in affine]

    def lut_planes(canvas, roi, out):
        planes = split(canvas)
        for src, table, dst in zip(sources, tables, out):
            _into(cv2.LUT(planes[src], table, dst=dst), dst)
    return lut_planes


class _Splitter:
    """cv2.split into three reused uint8 planes (splitting is the cheap pass; allocating is not)."""

    def __init__(self) -> None:
        self._planes = []  # type: List[np.ndarray]

    def __call__(self, canvas: np.ndarray) -> List[np.ndarray]:
        if not self._planes or self._planes[0].shape != canvas.shape[:2]:
            self._planes = [np.empty(canvas.shape[:2], np.uint8) for _ in range(3)]
        got = cv2.split(canvas, self._planes)
        for plane, dst in zip(got, self._planes):
            _into(plane, dst)
        return self._planes


def _nhwc_kernel(dtype: np.dtype, swap_rb: bool, affine) -> Kernel:
    def to_rgb(roi):
        # Only the picture needs swapping: the padding is the same grey in every channel.
        if swap_rb:
            _into(cv2.cvtColor(roi, cv2.COLOR_BGR2RGB, dst=roi), roi)

    if affine is None:
        def raw(canvas, roi, out):   # the canvas is the output tensor itself
            to_rgb(roi)
        return raw
    if dtype == np.float16:
        return _via_float32_scratch(_nhwc_kernel(np.dtype(np.float32), swap_rb, affine))
    if dtype == np.float32 and len(set(affine)) == 1:
        alpha, beta = affine[0]

        def uniform(canvas, roi, out):
            to_rgb(roi)
            # Same map for every channel: treat HxWx3 as one HxW*3 plane, a single SIMD pass.
            flat = canvas.reshape(canvas.shape[0], -1)
            dst = out.reshape(flat.shape)
            _into(cv2.addWeighted(flat, alpha, flat, 0.0, beta, dst=dst, dtype=cv2.CV_32F), dst)
        return uniform
    table = np.stack([lookup_table(alpha, beta, dtype) for alpha, beta in affine], axis=-1)
    table = table.reshape(256, 1, 3)

    def lut(canvas, roi, out):
        to_rgb(roi)
        _into(cv2.LUT(canvas, table, dst=out), out)
    return lut


def _via_float32_scratch(kernel: Kernel) -> Kernel:
    scratch = {}

    def half(canvas, roi, out):
        buf = scratch.get(out.shape)
        if buf is None:
            buf = scratch[out.shape] = np.empty(out.shape, np.float32)
        kernel(canvas, roi, buf)
        np.copyto(out, buf, casting="same_kind")
    return half


def _into(result: np.ndarray, dst: np.ndarray) -> None:
    """OpenCV writes into ``dst`` when it fits and silently allocates otherwise; never lose it."""
    if result is not dst:
        np.copyto(dst, result, casting="same_kind")
