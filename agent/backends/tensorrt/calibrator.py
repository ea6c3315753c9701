"""INT8 calibration from real pictures, through the pipeline's own preprocessing.

TensorRT picks INT8 ranges from the activations it sees during calibration, so the images must
look like what the cameras deliver and must be preprocessed exactly as at run time. Random or
synthetic data gives an engine that runs and detects nothing useful, so there is no fallback:
int8 without images is a ConfigError.
"""

import itertools
import logging
import os
from typing import Callable, Iterator, List, Optional, Tuple

import numpy as np

from ...errors import ConfigError
from .cache import write_atomically

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_IMAGES = 500   # TensorRT's guidance: a few hundred representative images are enough


def calibration_images(calibration_dir: Optional[str], where: str) -> List[str]:
    """Image files of calibration_dir, sorted, at most MAX_IMAGES; ConfigError when none."""
    fix = ("put 100-500 real frames from the deployed cameras (.jpg/.png) in a folder and pass "
           "it as --calibration-dir (or the service's calibration_dir), or use precision fp16")
    if not calibration_dir:
        raise ConfigError("%s: tensorrt precision int8 needs calibration images and none were "
                          "given; %s" % (where, fix))
    if not os.path.isdir(calibration_dir):
        raise ConfigError("%s: calibration_dir %s is not a directory; %s" % (
            where, calibration_dir, fix))
    names = sorted(n for n in os.listdir(calibration_dir)
                   if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith("."))
    if not names:
        raise ConfigError("%s: calibration_dir %s has no images (%s); %s" % (
            where, calibration_dir, " ".join(IMAGE_EXTENSIONS), fix))
    if len(names) > MAX_IMAGES:
        log.info("INT8 calibration: using the first %d of %d images in %s",
                 MAX_IMAGES, len(names), calibration_dir)
    return [os.path.join(calibration_dir, n) for n in names[:MAX_IMAGES]]


def preprocessed(paths: List[str], preprocess: Callable, shape: Tuple[int, ...],
                 dtype: np.dtype, where: str) -> Iterator[np.ndarray]:
    """The network input for each readable image; the first one is checked before the build."""
    batches = _batches(paths, preprocess, shape, dtype, where)
    first = next(batches, None)
    if first is None:
        raise ConfigError("%s: none of the %d calibration images could be read by OpenCV (%s ...)"
                          % (where, len(paths), paths[0]))
    return itertools.chain([first], batches)


def _batches(paths, preprocess, shape, dtype, where) -> Iterator[np.ndarray]:
    import cv2
    for path in paths:
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            log.warning("INT8 calibration: %s is not a readable image, skipped", path)
            continue
        tensor = preprocess(image)
        if isinstance(tensor, tuple):   # a Preprocessor gives (tensor, transform)
            tensor = tensor[0]
        tensor = np.asarray(tensor)
        if tuple(tensor.shape) != tuple(shape):
            raise ConfigError("%s: calibration_preprocess gives shape %s for %s but the network "
                              "input is %s; pass the pipeline's own preprocessing" % (
                                  where, tuple(tensor.shape), path, tuple(shape)))
        # a copy: the pipeline's Preprocessor reuses one output buffer for every image
        yield np.array(tensor, dtype=dtype, copy=True)


def make_calibrator(trt, seam, batches: Iterator[np.ndarray], shape: Tuple[int, ...],
                    dtype: np.dtype, cache_path: str, on_batch: Callable[[int], None]):
    """An IInt8EntropyCalibrator2 that feeds `batches` one by one through a device buffer."""

    class ImageCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self.batches_fed = 0
            self.error = None  # type: Optional[BaseException]
            self._host = seam.pagelocked_empty(shape, dtype)
            self._device = seam.mem_alloc(self._host.nbytes)
            self._stream = seam.stream()

        def get_batch_size(self) -> int:
            return int(shape[0])

        def get_batch(self, names, *unused):
            # Exceptions must not cross back into TensorRT's C++: keep them for after the build.
            try:
                tensor = next(batches, None)
                if tensor is None:
                    return None
                np.copyto(self._host, tensor)
                seam.memcpy_htod_async(self._device, self._host, self._stream)
                seam.synchronize(self._stream)
                self.batches_fed += 1
                on_batch(self.batches_fed)
                return [int(self._device)]
            except Exception as why:  # re-raised by the builder once TensorRT returns
                self.error = why
                return None

        def read_calibration_cache(self):
            if os.path.isfile(cache_path):
                log.info("INT8 calibration: reusing %s", cache_path)
                with open(cache_path, "rb") as f:
                    return f.read()
            return None

        def write_calibration_cache(self, cache) -> None:
            if self.error is not None:   # a table from the images before the error: keep none
                return
            try:
                write_atomically(cache_path, bytes(cache))
                log.info("INT8 calibration cache written to %s", cache_path)
            except Exception as why:  # re-raised by the builder once TensorRT returns
                self.error = why

    return ImageCalibrator()
