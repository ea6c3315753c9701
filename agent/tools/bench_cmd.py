"""`edgeagent bench`: what a pipeline costs on this device, per available backend and precision.

Two numbers per row, both on the same frames:
- inference: Backend.infer on tensors prepared in advance (what published benchmarks quote);
- end-to-end: JPEG decode, preprocess, infer, decode, result payload - what the agent pays per
  frame, one frame at a time.
Plus CPU time per frame as % of one core, and the process' resident memory after the row.
Printed in Ultralytics' benchmark layout (model, device, precision, size, ms/im, FPS) so the
numbers sit beside published ones; --json for machines. Runs on the device (Python 3.6)."""

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Dict, List, Optional

import numpy as np

from .. import backends
from ..errors import BackendUnavailable, ConfigError, ModelError
from ..types import FP16, FP32
from ..wire import found_payload, to_json_bytes

if TYPE_CHECKING:   # the parser imports this module: no cv2 (an extra) before `bench` runs
    from ..config.pipeline_spec import PipelineSpec  # noqa: F401

# int8 needs calibration images: build-engine does it
TRT_PRECISIONS = (FP16, FP32)


def add_arguments(p) -> None:
    p.add_argument("--pipeline", action="append", metavar="NAME_OR_FILE",
                   help="pipeline to measure (repeatable; default face-detect)")
    p.add_argument("--backends", nargs="+", metavar="KEY",
                   help="only these backends (default: every one the pipeline names and this "
                        "machine can run)")
    p.add_argument("--images", metavar="DIR", help="jpg/png files to run on (default: built-in "
                   "test pictures)")
    p.add_argument("--frames", type=int, default=100, help="measured frames per row (100)")
    p.add_argument("--warmup", type=int, default=10, help="unmeasured frames first (10)")
    p.add_argument("--threads", type=int, default=0, help="runtime threads (0: runtime default)")
    p.add_argument("--cache-dir", help="TensorRT engine cache (default: the backend's)")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")


# ---- frames ----------------------------------------------------------------------------------

def test_pictures(images_dir: Optional[str]) -> List[bytes]:
    """Encoded pictures (JPEG/PNG bytes): decoding them is part of the end-to-end cost."""
    import cv2
    if images_dir:
        from ..sources.images import IMAGE_EXTENSIONS
        if not os.path.isdir(images_dir):
            raise ConfigError("--images %s: not a directory" % images_dir)
        names = sorted(n for n in os.listdir(images_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
        if not names:
            raise ConfigError("--images %s: no jpg/png/bmp files" % images_dir)
        encoded = []
        for name in names:
            with open(os.path.join(images_dir, name), "rb") as handle:
                encoded.append(handle.read())
        return encoded
    return [cv2.imencode(".jpg", picture)[1].tobytes() for picture in _built_in_pictures()]


def _built_in_pictures() -> List[np.ndarray]:
    """640x480 BGR pictures: scikit-image's photos where installed, else a seeded pattern."""
    import cv2
    try:
        import skimage.data
        photos = [skimage.data.astronaut(), skimage.data.coffee(), skimage.data.chelsea()]
        return [cv2.resize(np.ascontiguousarray(p[:, :, ::-1]), (640, 480)) for p in photos]
    except ImportError:
        rng = np.random.RandomState(0)
        base = cv2.resize(rng.randint(0, 255, (24, 32, 3)).astype(np.uint8), (640, 480))
        return [np.roll(base, 40 * i, axis=1) for i in range(3)]


# ---- one row ---------------------------------------------------------------------------------

def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _progress(label: str, done: int, total: int) -> None:
    """A bar redrawn in place on a terminal; four lines per row in a log."""
    tty = sys.stderr.isatty()
    if not tty and done not in (total // 4, total // 2, 3 * total // 4, total):
        return
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write("%s%-36s [%s%s] %d/%d%s" % (
        "\r" if tty else "", label[:36], "#" * filled, "." * (width - filled), done, total,
        "\n" if (done >= total or not tty) else ""))
    sys.stderr.flush()


def bench_row(spec: "PipelineSpec", key: str, options: Dict, precision: str,
              pictures: List[bytes], frames: int, warmup: int, show=_progress) -> Dict:
    import cv2
    from ..inference import Inference
    model = spec.model_for(key)
    backend = backends.load(key, model, options,
                            backends.BackendContext(spec.path, input_size=spec.input_size))
    try:
        inference = Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path,
                                         spec.labels, spec.input_size)
        decoded = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in pictures]
        from ..sources.live import make_frame
        label = "%s %s %s" % (spec.name, key, backend.info.precision)
        tensors = [inference.prepare(make_frame(img, i)).tensor.copy()
                   for i, img in enumerate(decoded)]
        # inference-only and end-to-end frames alternate, so load on the machine hits both
        infer_ms, e2e_ms = [], []
        cpu_s = wall_s = 0.0
        for i in range(warmup + frames):
            t0 = time.monotonic()
            backend.infer(tensors[i % len(tensors)])
            t1, c1 = time.monotonic(), time.process_time()
            image = cv2.imdecode(np.frombuffer(pictures[i % len(pictures)], np.uint8),
                                 cv2.IMREAD_COLOR)
            _, result = inference.finish(inference.infer(inference.prepare(make_frame(image, i))))
            found = result.detections if result.detections is not None else result.classifications
            to_json_bytes({"frame": i, "results": found_payload(found) if found is not None else []})
            t2, c2 = time.monotonic(), time.process_time()
            if i >= warmup:
                infer_ms.append((t1 - t0) * 1e3)
                e2e_ms.append((t2 - t1) * 1e3)
                cpu_s, wall_s = cpu_s + (c2 - c1), wall_s + (t2 - t1)
            show(label, i + 1, warmup + frames)
        info = backend.info     # one meaning of precision: what the loaded model computes in
    finally:
        backend.close()
    infer_p50, e2e_p50 = float(np.median(infer_ms)), float(np.median(e2e_ms))
    return {"pipeline": spec.name, "model": os.path.basename(model),
            "size_mb": round(os.path.getsize(model) / 1e6, 1) if os.path.isfile(model) else None,
            "backend": key,
            "device": info.device, "precision": info.precision,
            "frames": frames, "inference_ms": round(infer_p50, 2),
            "inference_fps": round(1000.0 / infer_p50, 1) if infer_p50 > 0 else None,
            "e2e_ms": round(e2e_p50, 2),
            "e2e_fps": round(1000.0 / e2e_p50, 1) if e2e_p50 > 0 else None,
            "cpu_percent_per_frame": round(100.0 * cpu_s / wall_s, 1) if wall_s > 0 else None,
            "rss_mb": round(_rss_mb(), 1)}


def _variants(spec: "PipelineSpec", keys: Optional[List[str]], threads: int,
              cache_dir: Optional[str] = None):
    """(backend key, options, label) for each row this machine can run (label: the TensorRT
    precision to build, else the model's own; the row reports backend.info); skipped backends
    with the reason."""
    rows, skipped = [], []
    for key in backends.BACKEND_KEYS:
        if keys and key not in keys:
            continue
        if spec.model_for(key) is None:
            continue
        reason = backends.probe(key)
        if reason is not None:
            skipped.append((key, reason))
            continue
        if key == "tensorrt":
            base = {"cache_dir": cache_dir} if cache_dir else {}
            rows.extend((key, dict(base, precision=p), p) for p in TRT_PRECISIONS)
        else:
            options = {"threads": threads} if threads else {}
            rows.append((key, options, ""))
    return rows, skipped


def run(args) -> int:
    if args.frames < 1 or args.warmup < 0:
        raise ConfigError("--frames must be >= 1 and --warmup >= 0")
    from ..config.pipeline_spec import load_pipeline
    pictures = test_pictures(args.images)
    specs = [load_pipeline(p) for p in (args.pipeline or ["face-detect"])]
    rows, notes = [], []
    started = time.monotonic()
    for spec in specs:
        missing = [p for p in spec.models.values() if not os.path.isfile(p)]
        if missing:
            from ..backends.model_sources import missing_model_message
            raise ModelError(missing_model_message(spec.name, missing[0]))
        variants, skipped = _variants(spec, args.backends, args.threads, args.cache_dir)
        notes.extend("%s: %s skipped: %s" % (spec.name, k, why) for k, why in skipped)
        for key, options, precision in variants:
            try:
                rows.append(bench_row(spec, key, options, precision, pictures, args.frames,
                                      args.warmup))
            except BackendUnavailable as why:
                notes.append("%s: %s skipped: %s" % (spec.name, " ".join(filter(None, (key, precision))),
                                                     why.detail))
    if not rows:
        raise BackendUnavailable("nothing to measure: %s" % ("; ".join(notes) or
                                                             "no backend selected"))
    if args.json:
        print(json.dumps({"rows": rows, "skipped": notes}, indent=2))
    else:
        print(format_table(rows, time.monotonic() - started, len(pictures)))
        for note in notes:
            print("note: " + note)
    return 0


COLUMNS = (("Model", "model", "%s"), ("Device", "device", "%s"), ("Backend", "backend", "%s"),
           ("Precision", "precision", "%s"), ("Size (MB)", "size_mb", "%.1f"),
           ("Inference (ms/im)", "inference_ms", "%.2f"), ("FPS", "inference_fps", "%.1f"),
           ("End-to-end (ms/im)", "e2e_ms", "%.2f"), ("FPS e2e", "e2e_fps", "%.1f"),
           ("CPU %/frame", "cpu_percent_per_frame", "%.0f"), ("RSS (MB)", "rss_mb", "%.0f"))


def format_table(rows: List[Dict], seconds: float, pictures: int) -> str:
    cells = [[title for title, _, _ in COLUMNS]]
    for row in rows:
        cells.append([(fmt % row[key]) if row.get(key) is not None else "-"
                      for _, key, fmt in COLUMNS])
    widths = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
    head = "Benchmarks complete for %s on %d pictures (%.1fs); median of %d frames per row" % (
        ", ".join(sorted(set(r["pipeline"] for r in rows))), pictures, seconds, rows[0]["frames"])
    lines = [head]
    for index, row in enumerate(cells):
        prefix = " " if index == 0 else str(index - 1)
        lines.append(("%-3s" % prefix) + "  ".join(c.rjust(w) for c, w in zip(row, widths)))
    return "\n".join(lines)
