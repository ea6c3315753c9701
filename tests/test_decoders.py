"""Decoders on constructed outputs with known answers, against straightforward loop references
(BlazeFace: tests/test_decoders_blazeface.py, NMS: tests/test_nms.py)."""

import numpy as np
import pytest

from agent.errors import ConfigError, ModelError
from agent.processing.decoders import build_decoder
from agent.types import ImageTransform, TensorSpec
from nms_reference import reference_nms, to_source

PATH = "pipelines/test.yaml"
IN_640 = TensorSpec("images", (1, 3, 640, 640), "float32")
LETTERBOX_1280x720 = ImageTransform(1280, 720, 0.5, 0.5, 0.0, 140.0)   # into 640x640


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
