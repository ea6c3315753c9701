"""Does the loaded model fit its pipeline? Checked once before the first frame, by `run` and
by `validate` alike (the same checks, the same one line):

* input size: a model with a dynamic input needs the pipeline's `input_size`; one that
  contradicts a fixed-size model is refused (both name the key);
* one blank frame goes through preprocess -> model -> decoder, so anything the first real
  frame would meet (decoder.num_classes against the real output) fails now;
* the decoder's layout against the real output: YOLOv5 rows are [1, N, 5+C] (boxes first),
  a YOLOv8 export writes [1, 4+C, N] (values first);
* the labels against the model's classes, counted from that output.
"""

from typing import Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelError
from ..config.pipeline_spec import PipelineSpec
from ..types import TensorSpec

GRAY = 114          # the blank frame: YOLO's padding gray


def check_input_size(pipeline: PipelineSpec, input_spec: TensorSpec, model: str) -> None:
    """`input_size` is set exactly when the model's input size is dynamic, and agrees with a
    fixed one."""
    hw = _model_hw(pipeline, input_spec)
    if hw is None:
        return                      # not an image input: preprocess says what is wrong
    height, width = hw
    fixed = height > 0 and width > 0
    where = "pipeline %s" % pipeline.path
    if pipeline.input_size is None and not fixed:
        raise ModelError("%s: model %s has a dynamic input size (input %r %s); set input_size: "
                         "[width, height] in the pipeline to the size it was exported or "
                         "trained at, e.g. input_size: [640, 640]" % (
                             where, model, input_spec.name, _shape(input_spec.shape)))
    if pipeline.input_size is None:
        return
    want_w, want_h = pipeline.input_size
    if (height > 0 and height != want_h) or (width > 0 and width != want_w):
        raise ModelError("%s: input_size %dx%d contradicts model %s, whose input %r takes "
                         "%sx%s (shape %s); set input_size: [%s, %s] or remove it" % (
                             where, want_w, want_h, model, input_spec.name, width, height,
                             _shape(input_spec.shape), width, height))


def check_on_blank_frame(pipeline: PipelineSpec, inference, model: str) -> None:
    """A gray frame through the whole model path; then the output against decoder and labels."""
    from ..sources.live import make_frame
    frame = make_frame(np.full((480, 640, 3), GRAY, np.uint8), 0)
    try:
        inferred = inference.infer(inference.prepare(frame))
        inference.finish(inferred)
    except ModelError:
        raise
    except Exception as exc:  # a runtime failing on a frame the pipeline would give it
        raise ModelError("pipeline %s: model %s fails on a blank frame: %s: %s" % (
            pipeline.path, model, type(exc).__name__, str(exc).splitlines()[0] if str(exc)
            else ""))
    shapes = [tuple(np.asarray(o).shape) for o in inferred.outputs]
    names = [s.name for s in inference.backend.output_specs]
    check_decoder_layout(pipeline, shapes, names, model)
    check_labels(pipeline, shapes, names, model)


def check_decoder_layout(pipeline: PipelineSpec, shapes: Sequence[Tuple[int, ...]],
                         names: Sequence[str], model: str) -> None:
    kind = pipeline.decoder.get("type")
    if kind != "yolov5" or len(shapes) != 1 or len(shapes[0]) != 3:
        return
    values, boxes = shapes[0][1], shapes[0][2]
    if pipeline.decoder.get("num_classes") is None and values < boxes:
        raise ModelError("pipeline %s: decoder.type yolov5 expects one output [1, N, 5+C] (boxes "
                         "first) but model %s's output %s is %s: YOLOv8's layout [1, 4+C, N]; "
                         "set decoder.type: yolov8" % (pipeline.path, model, _name(names),
                                                      _shape(shapes[0])))


def model_classes(pipeline: PipelineSpec, shapes: Sequence[Tuple[int, ...]]
                  ) -> Optional[Tuple[int, str]]:
    """(number of classes, how that was read) from the real outputs; None where the decoder's
    outputs do not tell (ssd: class ids without a class count)."""
    kind = pipeline.decoder.get("type")
    if kind in ("yolov8", "yolov5") and len(shapes) == 1 and len(shapes[0]) == 3:
        head = 4 if kind == "yolov8" else 5
        given = pipeline.decoder.get("num_classes")
        rows = head + given if isinstance(given, int) else min(shapes[0][1:])
        return rows - head, "%d box values%s + %d class scores per box" % (
            4, " + objectness" if head == 5 else "", rows - head)
    if kind == "classify" and len(shapes) == 1:
        return int(np.prod(shapes[0][1:])), "one score per class"
    if kind == "blazeface":
        return 1, "BlazeFace finds faces only"
    return None


def check_labels(pipeline: PipelineSpec, shapes: Sequence[Tuple[int, ...]],
                 names: Sequence[str], model: str) -> None:
    classes = model_classes(pipeline, shapes)
    if not pipeline.labels or classes is None or classes[0] == len(pipeline.labels):
        return
    count, how = classes
    raise ModelError("pipeline %s: %s has %d label%s but model %s has %d class%s (output %s "
                     "%s: %s); give one label per class, in the model's class order" % (
                         pipeline.path, pipeline.labels_key, len(pipeline.labels),
                         "" if len(pipeline.labels) == 1 else "s", model, count,
                         "" if count == 1 else "es", _name(names), _shape(shapes[0]), how))


def _model_hw(pipeline: PipelineSpec, spec: TensorSpec) -> Optional[Tuple[int, int]]:
    if len(spec.shape) != 4:
        return None
    layout = spec.layout if pipeline.preprocess.layout == "auto" else pipeline.preprocess.layout
    if layout == "NCHW":
        return int(spec.shape[2]), int(spec.shape[3])
    return int(spec.shape[1]), int(spec.shape[2])


def _shape(shape) -> str:
    return "[%s]" % ", ".join(str(int(d)) for d in shape)


def _name(names: Sequence[str]) -> str:
    return repr(names[0]) if names else "0"
