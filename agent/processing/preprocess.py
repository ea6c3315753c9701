"""Frame (BGR uint8 HxWx3) -> the model's input tensor, plus the transform to map boxes back.

One resize into a preallocated canvas (letterbox or stretch), then one fused kernel
(agent/processing/normalize.py) that swaps channels, normalizes or quantizes, and lays the
values out as NCHW or NHWC directly into a preallocated output tensor.
"""

import logging
from typing import Optional, Tuple

import cv2
import numpy as np

from ..errors import ConfigError, ModelError, SourceError
from ..types import ImageTransform, TensorSpec
from .normalize import channel_affine, make_kernel
from .preprocess_config import SECTION, SUPPORTED_DTYPES, PreprocessConfig  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


class Preprocessor:
    """Turns BGR frames into input tensors for one model input.

    ``input_size`` is (width, height) and is needed only when the model's H/W are dynamic.
    The returned tensor is a preallocated buffer that the next call overwrites: run inference on
    it (or copy it) before preprocessing the next frame.
    """

    def __init__(self, config: PreprocessConfig, spec: TensorSpec,
                 input_size: Optional[Tuple[int, int]] = None) -> None:
        self.config = config
        layout = _layout_of(config, spec)
        height, width = _input_hw(spec, layout, input_size, config.source)
        dtype = _dtype_of(spec)
        shape = (1, 3, height, width) if layout == "NCHW" else (1, height, width, 3)
        self.tensor_spec = TensorSpec(spec.name, shape, spec.dtype, spec.quantization)
        self.layout = layout
        self._size = (width, height)
        self._out = np.empty(shape, dtype)
        # Raw uint8 NHWC needs no conversion: the canvas *is* the tensor, saving a copy.
        affine = _affine_of(config, spec, dtype)
        raw_nhwc = affine is None and layout == "NHWC"
        self._canvas = self._out[0] if raw_nhwc else np.empty((height, width, 3), np.uint8)
        self._kernel = make_kernel(layout, dtype, config.color == "rgb", affine)
        self._geometry = None       # (src_shape, roi view, ImageTransform) of the last frame size

    def __call__(self, image_bgr: np.ndarray) -> Tuple[np.ndarray, ImageTransform]:
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
            raise SourceError("frame is %s %s; preprocessing needs BGR uint8 HxWx3 images" % (
                image_bgr.dtype, image_bgr.shape))
        geometry = self._geometry
        if geometry is None or geometry[0] != image_bgr.shape:
            geometry = self._geometry = self._plan(image_bgr.shape)
        _, roi, transform = geometry
        resized = cv2.resize(image_bgr, (roi.shape[1], roi.shape[0]), dst=roi,
                             interpolation=cv2.INTER_LINEAR)
        if resized is not roi:      # an OpenCV that would not write into the view
            np.copyto(roi, resized)
        self._kernel(self._canvas, roi, self._out[0])
        return self._out, transform

    def _plan(self, src_shape: Tuple[int, ...]):
        """Where the frame goes on the canvas; refills the padding when the frame size changes."""
        src_h, src_w = src_shape[:2]
        dst_w, dst_h = self._size
        if self.config.resize == "stretch":
            new_w, new_h, left, top = dst_w, dst_h, 0, 0
        else:
            new_w, new_h, left, top = letterbox_box(src_w, src_h, dst_w, dst_h)
            self._canvas[...] = self.config.pad_value
        roi = self._canvas[top:top + new_h, left:left + new_w]
        transform = ImageTransform(src_w, src_h, new_w / src_w, new_h / src_h,
                                   float(left), float(top))
        log.debug("preprocess %dx%d -> %dx%d: %s", src_w, src_h, dst_w, dst_h, transform)
        return src_shape, roi, transform


def letterbox_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> Tuple[int, int, int, int]:
    """(width, height, left, top) of the picture inside a dst_w x dst_h letterbox canvas."""
    scale = min(dst_w / src_w, dst_h / src_h)
    new_w = min(dst_w, max(1, int(round(src_w * scale))))
    new_h = min(dst_h, max(1, int(round(src_h * scale))))
    return new_w, new_h, (dst_w - new_w) // 2, (dst_h - new_h) // 2


def _layout_of(config: PreprocessConfig, spec: TensorSpec) -> str:
    if len(spec.shape) != 4:
        raise ModelError("model input %r has shape %s; image models take [1, 3, H, W] or "
                         "[1, H, W, 3]" % (spec.name, list(spec.shape)))
    layout = spec.layout if config.layout == "auto" else config.layout
    channels = spec.shape[1] if layout == "NCHW" else spec.shape[3]
    if channels not in (3, -1):
        raise ModelError("model input %r has shape %s: as %s that is %s channels, but frames have "
                         "3; fix %s in %s (auto reads it from the model)" % (
                             spec.name, list(spec.shape), layout, channels, SECTION + "layout",
                             config.source or "the pipeline"))
    return layout


def _input_hw(spec: TensorSpec, layout: str, input_size: Optional[Tuple[int, int]],
              source: str) -> Tuple[int, int]:
    height, width = (spec.shape[2], spec.shape[3]) if layout == "NCHW" else spec.shape[1:3]
    fixed = height > 0 and width > 0
    if input_size is None:
        if not fixed:
            raise ModelError("model input %r has a dynamic size %s; set the input size in %s" % (
                spec.name, list(spec.shape), source or "the pipeline"))
        return int(height), int(width)
    want_w, want_h = (int(v) for v in input_size)
    if want_w <= 0 or want_h <= 0:
        raise ConfigError("%s: input size %dx%d must be positive" % (source, want_w, want_h))
    if (height > 0 and height != want_h) or (width > 0 and width != want_w):
        raise ModelError("%s asks for %dx%d but model input %r takes %sx%s (shape %s); "
                         "set the pipeline's input size to %sx%s or remove it" % (
                             source or "the pipeline", want_w, want_h, spec.name, width, height,
                             list(spec.shape), width, height))
    return want_h, want_w


def _dtype_of(spec: TensorSpec) -> np.dtype:
    if spec.dtype not in SUPPORTED_DTYPES:
        raise ModelError("model input %r is %s; supported input types: %s" % (
            spec.name, spec.dtype, ", ".join(SUPPORTED_DTYPES)))
    return np.dtype(spec.dtype)


def _affine_of(config: PreprocessConfig, spec: TensorSpec, dtype: np.dtype):
    """Per-channel (alpha, beta) for the kernel, or None for raw uint8 pixels."""
    quant = spec.quantization if spec.quantization and spec.quantization[0] > 0 else None
    if dtype.kind == "f":
        return channel_affine(config.mean, config.std, None)
    if quant is not None:
        return channel_affine(config.mean, config.std, quant)
    if dtype == np.int8:
        raise ModelError("model input %r is int8 without quantization parameters (scale, "
                         "zero_point); re-export the model with them or use a float model"
                         % spec.name)
    if config.mean != (0.0, 0.0, 0.0) or config.std != (1.0, 1.0, 1.0):
        # The same pipeline may serve a float model on another backend; this one wants pixels.
        log.info("model input %r takes raw uint8 pixels: preprocess mean/std of %s not applied",
                 spec.name, config.source)
    return None
