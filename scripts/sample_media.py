"""Sample media made from scikit-image's bundled photos (public domain / CC0), for demos and tests.

    python scripts/sample_media.py video OUT.avi [--frames 60] [--fps 15]
    python scripts/sample_media.py images OUT_DIR [--names astronaut coffee chelsea]

Importing this module has no side effects. Needs numpy, opencv-python(-headless), scikit-image.
The video is MJPG in .avi: opencv-python wheels have no H.264 encoder, MJPG is readable everywhere.
"""

import argparse
import os
import sys
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import skimage.data

VIDEO_SIZE = (640, 480)            # width, height of every video frame
# Centre of the astronaut's face in the 512x512 photo (x, y), measured with BlazeFace.
ASTRONAUT_FACE_XY = (227.0, 129.0)
DEFAULT_IMAGES = ("astronaut", "coffee", "chelsea")


def photo_bgr(name: str) -> np.ndarray:
    """A scikit-image sample photo ('astronaut', 'coffee', 'chelsea', 'rocket'...) as BGR uint8."""
    loader = getattr(skimage.data, name, None)
    if loader is None:
        raise ValueError("skimage.data has no photo %r" % name)
    image = np.asarray(loader())
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image[:, :, :3], cv2.COLOR_RGB2BGR)


def crop_window(index: int, frames: int, photo_hw: Tuple[int, int]) -> Tuple[int, int, int, int]:
    """The 4:3 window (x, y, w, h) shown in frame `index`: a slow zoom in and a sideways pan
    that always keeps the face in view."""
    height, width = photo_hw
    phase = index / float(max(frames - 1, 1))
    zoom = 1.0 + 0.25 * np.sin(np.pi * phase)                 # 1.0 -> 1.25 -> 1.0
    win_w = int(round(width / zoom))
    win_h = int(round(win_w * VIDEO_SIZE[1] / float(VIDEO_SIZE[0])))
    centre_x = ASTRONAUT_FACE_XY[0] + 40.0 * np.sin(2 * np.pi * phase)
    centre_y = ASTRONAUT_FACE_XY[1] + 50.0
    x = int(np.clip(centre_x - win_w / 2.0, 0, width - win_w))
    y = int(np.clip(centre_y - win_h / 2.0, 0, height - win_h))
    return x, y, win_w, win_h


def sample_frames(frames: int = 60) -> List[np.ndarray]:
    """The video's frames (BGR uint8, 480x640), built from the astronaut photo."""
    photo = photo_bgr("astronaut")
    out = []
    for index in range(frames):
        x, y, w, h = crop_window(index, frames, photo.shape[:2])
        out.append(cv2.resize(photo[y:y + h, x:x + w], VIDEO_SIZE, interpolation=cv2.INTER_AREA))
    return out


def make_sample_video(path: str, frames: int = 60, fps: float = 15) -> str:
    """Write the astronaut pan/zoom clip as MJPG .avi at `path`; returns `path`."""
    if frames < 1:
        raise ValueError("frames must be at least 1, got %r" % frames)
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), float(fps), VIDEO_SIZE)
    if not writer.isOpened():
        raise RuntimeError("OpenCV cannot write MJPG video to %s (check the directory exists and "
                           "the name ends in .avi)" % path)
    try:
        for frame in sample_frames(frames):
            writer.write(frame)
    finally:
        writer.release()
    return path


def write_sample_images(directory: str, names: Sequence[str] = DEFAULT_IMAGES,
                        quality: int = 90) -> List[str]:
    """Write scikit-image photos as NAME.jpg into `directory` (made if missing); returns paths."""
    os.makedirs(directory, exist_ok=True)
    paths = []
    for name in names:
        path = os.path.join(directory, "%s.jpg" % name)
        if not cv2.imwrite(path, photo_bgr(name), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise RuntimeError("OpenCV could not write %s" % path)
        paths.append(path)
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write sample media from scikit-image photos.")
    sub = parser.add_subparsers(dest="what")   # required= is 3.7+; checked below
    video = sub.add_parser("video", help="astronaut pan/zoom clip, MJPG .avi")
    video.add_argument("out")
    video.add_argument("--frames", type=int, default=60)
    video.add_argument("--fps", type=float, default=15)
    images = sub.add_parser("images", help="still JPEGs into a directory")
    images.add_argument("out")
    images.add_argument("--names", nargs="+", default=list(DEFAULT_IMAGES))
    args = parser.parse_args(argv)
    if args.what is None:
        parser.error("say what to write: video or images")
    if args.what == "video":
        print(make_sample_video(args.out, args.frames, args.fps))
    else:
        print("\n".join(write_sample_images(args.out, args.names)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
