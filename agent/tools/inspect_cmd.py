"""`edgeagent inspect MODEL [--json] [--write-pipeline FILE [--labels FILE]]`.

Shows what a model takes and gives, guesses the decoder, and can write a pipeline that is
checked against the model the way `run` checks it before the first frame - so a written
pipeline that `inspect` accepts also loads in `run`. Runs on the device (Python 3.6)."""

import json
import os
from typing import List, Optional

from ..errors import ConfigError, ModelError
from .model_guess import UNKNOWN, Guess, guess
from .model_info import ModelInfo, TensorInfo, read_model

BACKENDS_OF_FORMAT = {"onnx": ("onnxruntime", "tensorrt"), "tflite": ("tflite",),
                      "tensorrt": ("tensorrt",)}


def add_arguments(p) -> None:
    p.add_argument("model", help="model file: .onnx, .tflite, or a TensorRT .engine/.plan")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--write-pipeline", metavar="FILE",
                   help="write a pipeline YAML for this model (checked against it)")
    p.add_argument("--labels", metavar="FILE", help="class names, one per line, for the pipeline")
    p.add_argument("--name", help="pipeline name (default: the model file's name)")


def run(args) -> int:
    model = os.path.abspath(args.model)
    info = read_model(model)
    found = guess(info)
    if args.json:
        print(json.dumps(as_dict(info, found), indent=2))
    else:
        print(format_info(info, found))
    if args.write_pipeline:
        text = pipeline_yaml(info, found, os.path.abspath(args.write_pipeline), args.labels,
                             args.name)
        write_checked(text, os.path.abspath(args.write_pipeline), info)
        if not args.json:
            print("wrote %s (check the lines marked CHECK, then: edgeagent validate --config "
                  "CONFIG --pipeline %s)" % (args.write_pipeline, args.write_pipeline))
    return 0


# ---- showing ------------------------------------------------------------------------------------

def _tensor_line(t: TensorInfo) -> str:
    dims = "[%s]" % ", ".join(str(d) for d in t.shape)
    extras = []
    if t.layout:
        extras.append(t.layout)
    if t.dynamic_axes:
        extras.append("dynamic: " + ", ".join("axis %d (%s)" % kv for kv in
                                              sorted(t.dynamic_axes.items())))
    if t.quantization:
        extras.append("quantized scale %g zero %d" % t.quantization)
    return "  %-14s %-8s %s%s" % (t.name, t.dtype, dims, ("  " + "; ".join(extras)) if extras else "")


def format_info(info: ModelInfo, found: Guess) -> str:
    lines = ["model     %s" % info.path,
             "format    %s (%.1f MB), read by %s" % (info.format, info.size_bytes / 1e6,
                                                    info.runtime)]
    if info.ir_version is not None:
        lines.append("onnx      IR %d, opset %s%s" % (
            info.ir_version, info.opset, (", producer " + info.producer) if info.producer else ""))
    lines.append("inputs")
    lines.extend(_tensor_line(t) for t in info.inputs)
    lines.append("outputs")
    lines.extend(_tensor_line(t) for t in info.outputs)
    names = info.class_names
    if names:
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        lines.append("names     %d in the model's metadata: %s" % (len(names), shown))
    if found.task == UNKNOWN:
        lines.append("guess     none: %s" % found.reason)
    else:
        lines.append("guess     task %s, decoder %s%s" % (
            found.task, found.decoder,
            ", %d classes" % found.num_classes if found.num_classes else ""))
        lines.append("          because %s" % found.reason)
    lines.extend("check     %s" % c for c in found.checks)
    return "\n".join(lines)


def as_dict(info: ModelInfo, found: Guess) -> dict:
    def tensor(t: TensorInfo) -> dict:
        return {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "layout": t.layout,
                "dynamic_axes": {str(k): v for k, v in t.dynamic_axes.items()},
                "quantization": list(t.quantization) if t.quantization else None}
    return {"path": info.path, "format": info.format, "size_bytes": info.size_bytes,
            "runtime": info.runtime, "ir_version": info.ir_version, "opset": info.opset,
            "opsets": info.opsets, "producer": info.producer,
            "inputs": [tensor(t) for t in info.inputs],
            "outputs": [tensor(t) for t in info.outputs], "class_names": info.class_names,
            "guess": {"task": found.task, "decoder": found.decoder, "reason": found.reason,
                      "num_classes": found.num_classes,
                      "input_size": list(found.input_size) if found.input_size else None,
                      "preprocess": found.preprocess, "decoder_config": found.decoder_cfg,
                      "checks": found.checks}}


# ---- writing a pipeline -------------------------------------------------------------------------

def _flow(value) -> str:
    """A YAML flow value (JSON is YAML)."""
    return json.dumps(value)


def read_labels(path: str) -> List[str]:
    try:
        with open(path) as handle:
            return [line.strip() for line in handle if line.strip()]
    except OSError as why:
        raise ConfigError("%s: cannot read labels (%s)" % (path, why.strerror or why))


def pipeline_yaml(info: ModelInfo, found: Guess, out_path: str, labels_path: Optional[str],
                  name: Optional[str]) -> str:
    if found.task == UNKNOWN:
        raise ModelError("%s: no pipeline written: %s" % (info.path, found.reason))
    name = name or os.path.splitext(os.path.basename(out_path))[0]
    model_ref = _reference(info.path, out_path)
    lines = ["# Written by `edgeagent inspect %s`." % os.path.basename(info.path),
             "# Guess: %s, decoder %s, because %s." % (found.task, found.decoder, found.reason),
             "# Lines marked CHECK are guesses a person must confirm against the training code.",
             "name: %s" % _flow(name),
             "description: %s" % _flow("%s (%s)" % (os.path.basename(info.path), found.decoder)),
             "task: %s" % found.task, "models:"]
    lines += ["  %s: %s" % (key, _flow(model_ref)) for key in BACKENDS_OF_FORMAT[info.format]]
    if found.input_size:
        lines.append("input_size: %s   # CHECK [width, height]: the model's input is dynamic"
                     % _flow(list(found.input_size)))
    lines += _preprocess_lines(found)
    lines += ["decoder:", "  type: %s" % found.decoder]
    for key, value in sorted(found.decoder_cfg.items()):
        note = "   # CHECK: tune on your images" if key == "score_threshold" else ""
        lines.append("  %s: %s%s" % (key, _flow(value), note))
    if found.decoder in ("yolov8", "yolov5") and found.num_classes:
        lines.append("  num_classes: %d   # from the output shape; catches a wrong export" %
                     found.num_classes)
    lines += _label_lines(info, found, labels_path, out_path)
    return "\n".join(lines) + "\n"


def _reference(target: str, out_path: str) -> str:
    """A file named in the pipeline: relative when it lies beside or below the pipeline's
    folder (the pair can move together), else absolute."""
    ref = os.path.relpath(target, os.path.dirname(out_path))
    return target if ref.startswith(os.pardir) else ref


def _preprocess_lines(found: Guess) -> List[str]:
    pre = found.preprocess
    notes = {
        "resize": "CHECK letterbox (keeps aspect, pads) for YOLO/BlazeFace; stretch for most "
                  "classifiers",
        "color": "CHECK the channel order the model was trained on (PyTorch/PIL: rgb)",
        "mean": "CHECK subtracted per channel in 0..255 pixels; [0, 0, 0] when the graph "
                "normalizes itself",
        "std": "CHECK divided per channel after mean; [255, 255, 255] = pixel / 255",
        "pad_value": "letterbox fill; Ultralytics trains with 114",
    }
    lines = ["preprocess:"]
    for key in ("resize", "color", "mean", "std", "pad_value"):
        if key in pre:
            lines.append("  %s: %s   # %s" % (key, _flow(pre[key]), notes[key]))
    return lines


def _label_lines(info: ModelInfo, found: Guess, labels_path: Optional[str],
                 out_path: str) -> List[str]:
    classes = found.num_classes
    if labels_path:
        names = read_labels(labels_path)
        if classes and found.task == "classify" and len(names) not in (classes, classes - 1):
            raise ConfigError("%s: %d labels, but the model has %d classes; one name per class, "
                              "in class-id order" % (labels_path, len(names), classes))
        if classes and found.task == "detect" and found.decoder != "ssd" and \
                len(names) != classes:
            raise ConfigError("%s: %d labels, but the model has %d classes; one name per class, "
                              "in class-id order" % (labels_path, len(names), classes))
        ref = _reference(os.path.abspath(labels_path), out_path)
        return ["labels_file: %s" % _flow(ref)]
    names = info.class_names
    if names:
        return ["labels: %s   # from the model's names metadata" % _flow(names)]
    if found.decoder == "blazeface":
        return ["labels: [\"face\"]"]
    return ["# CHECK no labels: results carry class ids; add labels_file: names.txt (one per "
            "line, in class-id order)"]


def write_checked(text: str, path: str, info: ModelInfo) -> None:
    """Write the pipeline, then load it and build its preprocess and decoder against the model
    exactly as `run` does; a pipeline that would fail is removed and the reason raised."""
    from ..config.pipeline_spec import pipeline_from_dict
    from ..processing.decoders import build_decoder
    from ..processing.preprocess import Preprocessor
    import yaml
    folder = os.path.dirname(path)
    if folder and not os.path.isdir(folder):
        raise ConfigError("%s: folder %s does not exist" % (path, folder))
    with open(path, "w") as handle:
        handle.write(text)
    try:
        spec = pipeline_from_dict(yaml.safe_load(text), path)
        pre = Preprocessor(spec.preprocess, info.inputs[0].spec(), spec.input_size)
        build_decoder(spec.decoder, path, pre.tensor_spec, [o.spec() for o in info.outputs])
    except (ConfigError, ModelError) as why:
        os.remove(path)
        raise ModelError("%s: the written pipeline does not fit the model (%s); nothing written"
                         % (path, why.detail))
