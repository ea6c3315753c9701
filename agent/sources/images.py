"""images:// sources: the pictures of one directory, in file-name order."""

import dataclasses  # novm: the dataclasses backport serves 3.6
import os
from typing import List, Optional

import cv2

from ..errors import SourceError
from ..types import CAMERA_RUNNING, CAMERA_STOPPED, CameraStatus, Frame
from .live import make_frame
from .uri import SourceSpec

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


class ImageDirSource:
    """Every jpg/png/bmp file of a directory, sorted by name; loop restarts at the first."""

    live = False

    def __init__(self, spec: SourceSpec) -> None:
        self.uri = spec.uri
        self.loop = spec.loop
        self.paths = list_images(spec)
        self._index = 0
        self._closed = False

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The next picture, or None after the last one (never when looping)."""
        if self._closed or (self._index >= len(self.paths) and not self.loop):
            return None
        path = self.paths[self._index % len(self.paths)]
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None:
            raise SourceError("%s: cannot decode image %s (corrupt or not an image; remove or "
                              "re-save it)" % (self.uri, path))
        frame = dataclasses.replace(make_frame(image, self._index), file=os.path.basename(path))
        self._index += 1
        return frame

    def status(self) -> CameraStatus:
        ended = self._closed or (self._index >= len(self.paths) and not self.loop)
        return CameraStatus(CAMERA_STOPPED if ended else CAMERA_RUNNING)

    def close(self) -> None:
        self._closed = True


def list_images(spec: SourceSpec) -> List[str]:
    folder = spec.target
    if not os.path.isdir(folder):
        raise spec.error("image directory %s %s" % (
            folder, "is a file, not a directory" if os.path.exists(folder) else "does not exist"))
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_EXTENSIONS))
    if not names:
        raise spec.error("image directory %s has no %s files" % (
            folder, "/".join(e[1:] for e in IMAGE_EXTENSIONS)))
    return [os.path.join(folder, n) for n in names]

