"""The YOLOv8 decoder on real Ultralytics exports, against a reference written here as plain
loops (its own letterbox, the raw model run directly, its own per-class NMS):

- yolov8n_nudenet_320.onnx: a trained YOLOv8n (NudeNet's 18 classes, class 1 FACE_FEMALE) from
  the nudenet wheel, dynamic input run at 320x320; on real photos.
- yolov8n_untrained_coco80.onnx: the genuine YOLOv8n graph with random weights in the COCO-80
  export layout [1, 84, 8400]; it scores everything below 2e-4, so it checks layout only."""

import ast
import time

import cv2
import numpy as np
import onnxruntime
import pytest

from agent import backends
from agent.inference import Inference
from agent.config.pipeline_spec import pipeline_from_dict
from agent.types import Frame
from boxes import box_iou

PAD = 114


def session(path):
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def class_names(path):
    """The `names` metadata an Ultralytics export carries: "{0: 'a', 1: 'b'}"."""
    names = ast.literal_eval(session(path).get_modelmeta().custom_metadata_map["names"])
    return [names[i] for i in range(len(names))]


def scene(sample_media, name):
    """A real photo, or the astronaut placed in a 1280x720 frame (letterboxed by the pipeline)."""
    if name == "astronaut-in-1280x720":
        frame = np.full((720, 1280, 3), 30, np.uint8)
        frame[104:616, 500:1012] = sample_media.photo_bgr("astronaut")
        return frame
    return sample_media.photo_bgr(name)


# ---- the reference ----------------------------------------------------------------------------

def reference_letterbox(bgr, size):
    height, width = bgr.shape[:2]
    scale = min(size / float(width), size / float(height))
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), PAD, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(bgr, (new_w, new_h),
                                                            interpolation=cv2.INTER_LINEAR)
    chw = canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    # boxes map back by the size the picture really got on the canvas, per axis
    return chw[None], (new_w / float(width), new_h / float(height), left, top, width, height)


def reference_yolov8(path, bgr, size, threshold, iou_threshold, limit):
    """[(class, score, [x1, y1, x2, y2] in frame pixels)], best first."""
    tensor, (scale_x, scale_y, left, top, width, height) = reference_letterbox(bgr, size)
    raw = session(path).run(None, {"images": tensor})[0][0]      # [4 + classes, N]
    candidates = []
    for n in range(raw.shape[1]):
        column = [float(v) for v in raw[:, n]]
        scores = column[4:]
        best = max(range(len(scores)), key=lambda c: scores[c])
        if scores[best] > threshold:
            cx, cy, w, h = column[:4]
            candidates.append((best, scores[best], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]))
    candidates.sort(key=lambda c: -c[1])
    kept = []
    for candidate in candidates:
        if all(k[0] != candidate[0] or box_iou(k[2], candidate[2]) <= iou_threshold for k in kept):
            kept.append(candidate)
        if len(kept) == limit:
            break
    out = []
    for cls, score, box in kept:
        x1, x2 = [min(max((v - left) / scale_x, 0.0), width) for v in (box[0], box[2])]
        y1, y2 = [min(max((v - top) / scale_y, 0.0), height) for v in (box[1], box[3])]
        if x2 > x1 and y2 > y1:
            out.append((cls, score, [x1, y1, x2, y2]))
    return out


# ---- the agent -------------------------------------------------------------------------------

def agent_inference(path, size, threshold, iou_threshold, limit, labels):
    spec = pipeline_from_dict({
        "name": "yolov8-test", "models": {"onnxruntime": path}, "input_size": [size, size],
        "preprocess": {"resize": "letterbox", "color": "rgb", "mean": [0, 0, 0],
                       "std": [255, 255, 255], "pad_value": PAD},
        "decoder": {"type": "yolov8", "score_threshold": threshold,
                    "iou_threshold": iou_threshold, "max_detections": limit},
        "labels": labels}, "tests/yolov8-test.yaml")
    backend = backends.load("onnxruntime", spec.model_for("onnxruntime"), {"threads": 1}, spec.path)
    return Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path, spec.labels,
                                spec.input_size)


def run(inference, bgr):
    return inference(Frame(bgr, 0, time.time(), time.monotonic())).detections


@pytest.fixture(scope="module")
def nudenet(fetched_models):
    """(model path, class names, {score threshold: agent Inference})."""
    path = fetched_models["yolov8n_nudenet_320.onnx"]
    names = class_names(path)
    return path, names, {threshold: agent_inference(path, 320, threshold, 0.45, 100, names)
                         for threshold in (0.25, 0.01)}


# (photo, score threshold, how many detections at least): the low threshold gives the NMS and
# the class handling several overlapping boxes of several classes to sort out
@pytest.mark.parametrize("photo, threshold, at_least", [
    ("astronaut", 0.25, 1), ("astronaut-in-1280x720", 0.25, 1), ("chelsea", 0.25, 0),
    ("astronaut", 0.01, 5), ("astronaut-in-1280x720", 0.01, 4), ("chelsea", 0.01, 2),
    ("coffee", 0.01, 3), ("coins", 0.01, 0), ("rocket", 0.01, 0),
])
def test_trained_yolov8_detections_match_the_loop_reference(nudenet, sample_media, photo,
                                                            threshold, at_least):
    path, names, inferences = nudenet
    # given a real photo
    bgr = scene(sample_media, photo)
    # when the agent and the reference decode the trained model's output
    dets = run(inferences[threshold], bgr)
    expected = reference_yolov8(path, bgr, 320, threshold, 0.45, 100)
    # then the same boxes (frame pixels), scores and classes, best first
    assert len(dets) == len(expected) >= at_least
    if expected:
        np.testing.assert_allclose(dets.boxes, [e[2] for e in expected], atol=0.05)
        np.testing.assert_allclose(dets.scores, [e[1] for e in expected], atol=1e-5)
        assert dets.class_ids.tolist() == [e[0] for e in expected]
        assert list(dets.labels) == [names[e[0]] for e in expected]


@pytest.mark.parametrize("photo, left, top", [("astronaut", 0, 0),
                                              ("astronaut-in-1280x720", 500, 104)])
def test_trained_yolov8_finds_the_astronauts_face_in_frame_pixels(nudenet, sample_media, photo,
                                                                   left, top):
    path, names, inferences = nudenet
    dets = run(inferences[0.25], scene(sample_media, photo))
    faces = [i for i, label in enumerate(dets.labels) if label == "FACE_FEMALE"]
    assert len(faces) == 1
    x1, y1, x2, y2 = dets.boxes[faces[0]] - np.array([left, top, left, top])
    assert 160 < x1 < 200 and 250 < x2 < 290 and 50 < y1 < 100 and 150 < y2 < 200
    assert dets.scores[faces[0]] > 0.5


def test_untrained_coco80_export_layout_decodes_like_the_reference(fetched_models, sample_media):
    # given the untrained YOLOv8n in the [1, 84, 8400] export layout; it scores all below 2e-4,
    # so a threshold of 1e-4 and no suppression keep the few hundred best columns as they are
    path = fetched_models["yolov8n_untrained_coco80.onnx"]
    assert [o.shape for o in session(path).get_outputs()] == [[1, 84, 8400]]
    inference = agent_inference(path, 640, 1e-4, 1.0, 1000, class_names(path))
    bgr = sample_media.photo_bgr("chelsea")
    # when decoded by the agent and the reference
    dets = run(inference, bgr)
    expected = reference_yolov8(path, bgr, 640, 1e-4, 1.0, 1000)
    # then the same set of boxes, scores and classes (ties in score make the order arbitrary)
    assert 10 < len(dets) == len(expected) < 1000

    def rows(items):
        return sorted((int(c), round(float(s), 7)) + tuple(round(float(v), 2) for v in b)
                      for c, s, b in items)
    got = rows(zip(dets.class_ids, dets.scores, dets.boxes))
    want = rows(expected)
    assert [r[:2] for r in got] == [r[:2] for r in want]
    np.testing.assert_allclose([r[2:] for r in got], [r[2:] for r in want], atol=0.05)
    # and with the pipeline's real threshold it finds nothing, as an untrained model should
    assert len(run(agent_inference(path, 640, 0.25, 0.45, 100, class_names(path)), bgr)) == 0
