"""`edgeagent quantize`: ONNX Runtime static INT8 (QDQ) for CPU targets, calibrated on the
user's images through the pipeline's own preprocessing, kept only if it agrees with the fp32
model on held-out images (agent/tools/int8_gate.py).

Workstation-only: onnxruntime.quantization needs the `onnx` package and Python 3.8+; the INT8
model it writes runs on any onnxruntime >= 1.10 device. Detection heads (the box/score decode
after the last convolutions) can stay float: `--exclude-head auto` quantizes both ways and keeps
the one that agrees better (the faster one on a tie)."""

import json
import logging
import os
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Dict, List, Sequence

import numpy as np

from .. import backends
from ..errors import ConfigError, ModelError
from .int8_gate import Gate, agreement, holdout_split

if TYPE_CHECKING:   # the parser imports this module: no cv2 (an extra) before `quantize` runs
    from ..config.pipeline_spec import PipelineSpec  # noqa: F401

log = logging.getLogger(__name__)

COMPUTE_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
RESHAPING_OPS = ("Softmax", "Reshape", "Transpose")
TIE = 0.005


def add_arguments(p) -> None:
    p.add_argument("--pipeline", required=True, help="pipeline whose onnxruntime model to quantize")
    p.add_argument("--images", action="append", default=[], metavar="DIR",
                   help="folder of jpg/png images like the deployment's (repeatable)")
    p.add_argument("--video", action="append", default=[], metavar="FILE",
                   help="video file whose frames join the images (repeatable)")
    p.add_argument("--max-images", type=int, default=200, help="use at most this many (200)")
    p.add_argument("--holdout-every", type=int, default=4,
                   help="every Nth image is held out of calibration to judge agreement (4)")
    p.add_argument("--out", help="INT8 model path (default: MODEL.int8.onnx beside the model)")
    p.add_argument("--write-pipeline", metavar="FILE", help="also write a pipeline using it")
    p.add_argument("--exclude-head", choices=("auto", "yes", "no"), default="auto")
    p.add_argument("--min-match", type=float, default=Gate.min_match,
                   help="gate: detections matched (F1 at IoU 0.5) or top-1 agreement (0.9)")
    p.add_argument("--min-top1", type=float, default=Gate.min_top1, help="gate: top-1 (0.9)")
    p.add_argument("--max-score-drift", type=float, default=Gate.max_score_drift,
                   help="gate: mean |score change| of matched results (0.1)")
    p.add_argument("--threads", type=int, default=2, help="runtime threads when timing (2)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


# ---- images ----------------------------------------------------------------------------------

def read_frames(images: Sequence[str], videos: Sequence[str], limit: int) -> List:
    from ..sources import open_source
    uris = ["images://" + os.path.abspath(d) for d in images]
    uris += ["file://" + os.path.abspath(v) for v in videos]
    if not uris:
        raise ConfigError("quantize needs --images DIR or --video FILE: calibration must see "
                          "pictures like the deployment's")
    frames = []
    for uri in uris:
        source = open_source(uri)
        try:
            while True:
                frame = source.read()
                if frame is None:
                    break
                frames.append(frame)
        finally:
            source.close()
    if len(frames) > limit:
        picks = np.linspace(0, len(frames) - 1, limit).round().astype(int)
        frames = [frames[i] for i in picks]
    return frames


# ---- the model -------------------------------------------------------------------------------

def head_nodes(model) -> List[str]:
    """Nodes after the last convolutions: walking back from the outputs through everything but
    compute ops, plus a 1x1 convolution fed by a softmax/reshape (YOLOv8's DFL)."""
    producer = {}
    for node in model.graph.node:
        for out in node.output:
            producer[out] = node
    tail, frontier = {}, [o.name for o in model.graph.output]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or node.name in tail:
            continue
        if node.op_type in COMPUTE_OPS:
            feeder = producer.get(node.input[0])
            if feeder is None or feeder.op_type not in RESHAPING_OPS:
                continue
        tail[node.name] = node
        frontier.extend(node.input)
    return sorted(tail)


def quantize_model(src: str, dst: str, tensors: List[np.ndarray], input_name: str,
                   exclude: Sequence[str]) -> None:
    import onnx
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType,
                                          quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(tensors)

        def get_next(self):
            tensor = next(self._items, None)
            return None if tensor is None else {input_name: tensor}

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        try:
            from onnxruntime.quantization.shape_inference import quant_pre_process
            quant_pre_process(src, prepared, skip_symbolic_shape=True)
        except Exception as why:  # noqa: BLE001 the pre-pass is an optimisation: quantize as is
            log.info("quantize: shape pre-pass skipped (%s)", str(why).strip().splitlines()[0]
                     if str(why).strip() else type(why).__name__)
            prepared = src
        quantize_static(prepared, dst, Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(exclude))
    model = onnx.load(dst)
    entry = model.metadata_props.add()
    entry.key, entry.value = "edgeagent_quantization", "int8 qdq static, %d nodes float" % len(
        exclude)
    onnx.save(model, dst)


# ---- judging ---------------------------------------------------------------------------------

def _inference(spec: "PipelineSpec", model: str, threads: int):
    from ..inference import Inference
    backend = backends.load("onnxruntime", model, {"threads": threads}, spec.path)
    return Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path, spec.labels,
                                spec.input_size)


def _found(result):
    return result.detections if result.detections is not None else result.classifications


def judge(spec: "PipelineSpec", fp32: str, int8: str, held: List, threads: int):
    """Agreement of the INT8 model with the fp32 one on the held-out frames."""
    ref, test = _inference(spec, fp32, threads), _inference(spec, int8, threads)
    try:
        ref_results = [_found(ref(frame)) for frame in held]
        test_results = [_found(test(frame)) for frame in held]
    finally:
        ref.backend.close()
        test.backend.close()
    return agreement(ref_results, test_results)


def time_models(spec: "PipelineSpec", models: List[str], frame, threads: int,
                rounds: int = 30) -> List[float]:
    """Median inference ms of each model on the same tensor, runs interleaved round by round
    so machine load hits all alike; a few unmeasured rounds first."""
    sides = [_inference(spec, m, threads) for m in models]
    try:
        tensor = sides[0].prepare(frame).tensor.copy()
        times = [[] for _ in sides]  # type: List[List[float]]
        for round_index in range(5 + rounds):
            for side, measured in zip(sides, times):
                t0 = time.monotonic()
                side.backend.infer(tensor)
                if round_index >= 5:
                    measured.append((time.monotonic() - t0) * 1e3)
    finally:
        for side in sides:
            side.backend.close()
    return [float(np.median(t)) for t in times]


def run(args) -> int:
    from ..config.pipeline_spec import load_pipeline
    spec = load_pipeline(args.pipeline)
    fp32 = spec.model_for("onnxruntime")
    if fp32 is None or not fp32.endswith(".onnx"):
        raise ConfigError("%s: quantize needs an ONNX model under models.onnxruntime" % spec.path)
    if not os.path.isfile(fp32):
        from ..backends.model_sources import missing_model_message
        raise ModelError(missing_model_message(spec.name, fp32))
    gate = Gate.from_args(args)
    out = os.path.abspath(args.out or os.path.splitext(fp32)[0] + ".int8.onnx")
    frames = read_frames(args.images, args.video, args.max_images)
    where = ", ".join(["--images %s" % d for d in args.images] +
                      ["--video %s" % v for v in args.video])
    calibration, held = holdout_split(frames, args.holdout_every, where)
    prep = _inference(spec, fp32, args.threads)
    tensors = [prep.prepare(f).tensor.copy() for f in calibration]
    input_name = prep.backend.input_spec.name
    prep.backend.close()
    import onnx
    exclude_sets = _exclusions(args.exclude_head, spec, head_nodes(onnx.load(fp32)))
    trials = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, exclude in exclude_sets:
            candidate = os.path.join(tmp, "%s.onnx" % label)
            quantize_model(fp32, candidate, tensors, input_name, exclude)
            trials.append({"agreement": judge(spec, fp32, candidate, held, args.threads),
                           "label": label, "excluded": len(exclude), "path": candidate})
        speeds = time_models(spec, [fp32] + [t["path"] for t in trials], held[0], args.threads)
        for trial, ms in zip(trials, speeds[1:]):
            trial.update(fp32_ms=speeds[0], int8_ms=ms)
        best = _choose(trials, gate)
        report = _report(spec, fp32, out, best, trials, len(calibration), len(held), gate)
        if args.json:
            print(json.dumps(report, indent=2))
        else:
            print(_format(report))
        gate.check(best["agreement"], "%s: INT8 model of %s" % (spec.name, os.path.basename(fp32)),
                   "the fp32 model stays; nothing written")
        shutil.copyfile(best["path"], out)
    if args.write_pipeline:
        write_pipeline(spec, out, args.write_pipeline)
    return 0


def _exclusions(mode: str, spec: "PipelineSpec", head: List[str]):
    if mode == "no" or spec.task != "detect" or not head:
        return [("all-int8", [])]
    if mode == "yes":
        return [("head-float", head)]
    return [("head-float", head), ("all-int8", [])]


def _choose(trials: List[Dict], gate: Gate) -> Dict:
    """Of the trials the gate passes (else of all, to report): the best match, then the least
    score drift; within a tie of match the faster."""
    passing = [t for t in trials if not gate.failures(t["agreement"])] or trials
    best_match = max(t["agreement"].match for t in passing)
    close = [t for t in passing if t["agreement"].match >= best_match - TIE]
    return min(close, key=lambda t: (t["int8_ms"], t["agreement"].score_drift_mean))


def _report(spec, fp32, out, best, trials, calibrated, held, gate) -> Dict:
    return {"pipeline": spec.name, "fp32_model": fp32, "int8_model": out,
            "calibration_images": calibrated, "held_out_images": held,
            "chosen": best["label"], "gate": {"min_match": gate.min_match,
                                              "min_top1": gate.min_top1,
                                              "max_score_drift": gate.max_score_drift},
            "passed": not gate.failures(best["agreement"]),
            "trials": [{"label": t["label"], "float_nodes": t["excluded"],
                        "agreement": t["agreement"].as_dict(),
                        "fp32_ms": round(t["fp32_ms"], 2), "int8_ms": round(t["int8_ms"], 2),
                        "speedup": round(t["fp32_ms"] / t["int8_ms"], 2)} for t in trials]}


def _format(report: Dict) -> str:
    lines = ["quantize %s: calibrated on %d images, judged on %d held out" % (
        report["pipeline"], report["calibration_images"], report["held_out_images"])]
    for t in report["trials"]:
        a = t["agreement"]
        lines.append("  %-10s %3d float nodes  match %.3f  top-1 %.3f  drift %.4f  fp32 %.2f ms  "
                     "int8 %.2f ms  x%.2f%s" % (
                         t["label"], t["float_nodes"], a["match"], a["top1"],
                         a["score_drift_mean"], t["fp32_ms"], t["int8_ms"], t["speedup"],
                         "  <- chosen" if t["label"] == report["chosen"] else ""))
    lines.append("%s %s" % ("passed the gate, wrote" if report["passed"] else
                            "REFUSED by the gate, not written:", report["int8_model"]))
    return "\n".join(lines)


def write_pipeline(spec: "PipelineSpec", model: str, path: str) -> None:
    """The same pipeline with the INT8 model; labels inline so the file can live anywhere."""
    from ..config.yamlio import read_yaml
    data = dict(read_yaml(spec.path))
    data["name"] = spec.name + "-int8"
    data["models"] = {"onnxruntime": model}
    data.pop("labels_file", None)
    if spec.labels:
        data["labels"] = list(spec.labels)
    import yaml
    with open(path, "w") as handle:
        handle.write("# %s with its INT8 model, written by `edgeagent quantize`\n" % spec.name)
        yaml.safe_dump(data, handle, sort_keys=False)
