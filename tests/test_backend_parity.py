"""The same BlazeFace model on ONNX Runtime and on TFLite finds the same faces on real photos
(scikit-image's astronaut, as is and letterboxed into bigger frames), and the face is where an
independent reference puts it: its own letterbox, the raw model run directly, and a decoder
written as plain loops (MediaPipe's anchors, sigmoid, weighted NMS)."""

import math
import os
import time

import cv2
import numpy as np
import onnxruntime
import pytest

from agent import backends
from agent.inference import Inference
from agent.config.pipeline_spec import load_pipeline
from agent.types import Frame
from boxes import box_iou

BACKENDS = ("onnxruntime", "tflite")
# Centre of the astronaut's face box in the 512x512 photo (the face spans about x 175-275,
# y 65-175; BlazeFace's box takes in the forehead, so its centre sits a little high).
FACE_XY = (225.0, 120.0)
INPUT = 128
MIN_SCORE = 0.5
IOU_MERGE = 0.3


# ---- the scenes ------------------------------------------------------------------------------

# name -> (frame width, height, zoom of the 512x512 photo, where its top-left goes (may be
# outside the frame: the photo is cropped)). The short-range model wants faces of about 1/10 of
# the frame or more, so the 1280x720 frames show the photo zoomed.
SCENES = {
    "astronaut-512x512": (512, 512, 1.0, 0, 0),
    "astronaut-in-720x576-bars-top-bottom": (720, 576, 1.0, 150, 40),
    "astronaut-in-576x720-bars-left-right": (576, 720, 1.0, 32, 100),
    "astronaut-1280x720": (1280, 720, 2.5, 0, 0),
    "astronaut-1280x720-cropped": (1280, 720, 2.5, -200, -100),
    "astronaut-1280x720-off-centre": (1280, 720, 2.0, 200, -50),
}


def scene(sample_media, name, fill=60):
    """(BGR frame, zoom, left, top) of one scene."""
    width, height, zoom, left, top = SCENES[name]
    photo = sample_media.photo_bgr("astronaut")
    if zoom != 1.0:
        photo = cv2.resize(photo, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
    frame = np.full((height, width, 3), fill, np.uint8)
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(width, left + photo.shape[1]), min(height, top + photo.shape[0])
    frame[y0:y1, x0:x1] = photo[y0 - top:y1 - top, x0 - left:x1 - left]
    return frame, zoom, left, top


# ---- the independent reference ---------------------------------------------------------------

def reference_letterbox(bgr):
    """Centre the frame on a black square canvas, resize to 128, RGB, scaled to [-1, 1]."""
    height, width = bgr.shape[:2]
    scale = INPUT / float(max(width, height))
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    left, top = (INPUT - new_w) // 2, (INPUT - new_h) // 2
    canvas = np.zeros((INPUT, INPUT, 3), np.uint8)
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(bgr, (new_w, new_h),
                                                            interpolation=cv2.INTER_LINEAR)
    rgb = canvas[:, :, ::-1].astype(np.float32)
    return (rgb / 127.5 - 1.0)[None], (scale, left, top)


def reference_anchors():
    """Short-range SSD anchors: 16x16 cells with 2 anchors, then 8x8 cells with 6."""
    anchors = []
    for cells, per_cell in ((16, 2), (8, 6)):
        for y in range(cells):
            for x in range(cells):
                for _ in range(per_cell):
                    anchors.append(((x + 0.5) / cells, (y + 0.5) / cells))
    return anchors


def reference_faces(regressors, logits, geometry):
    """(box in frame pixels, score) per face: plain loops over the 896 anchors."""
    candidates = []
    for (ax, ay), raw, logit in zip(reference_anchors(), regressors, logits):
        score = 1.0 / (1.0 + math.exp(-min(100.0, max(-100.0, float(logit)))))
        if score < MIN_SCORE:
            continue
        cx, cy = ax * INPUT + float(raw[0]), ay * INPUT + float(raw[1])
        w, h = float(raw[2]), float(raw[3])
        candidates.append(([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], score))
    candidates.sort(key=lambda c: -c[1])
    faces = []
    while candidates:
        best = candidates[0]
        cluster = [c for c in candidates if box_iou(c[0], best[0]) > IOU_MERGE]
        total = sum(c[1] for c in cluster)
        merged = [sum(c[0][i] * c[1] for c in cluster) / total for i in range(4)]
        faces.append((merged, best[1]))
        candidates = [c for c in candidates if all(c is not k for k in cluster)]
    scale, left, top = geometry
    return [([(box[0] - left) / scale, (box[1] - top) / scale, (box[2] - left) / scale,
              (box[3] - top) / scale], score) for box, score in faces]


def reference_detect(bgr):
    tensor, geometry = reference_letterbox(bgr)
    session = onnxruntime.InferenceSession(load_pipeline("face-detect").model_for("onnxruntime"),
                                           providers=["CPUExecutionProvider"])
    regressors, logits = session.run(["regressors", "classificators"], {"input": tensor})
    return reference_faces(regressors[0], logits[0, :, 0], geometry)


# ---- the agent, through its Python API --------------------------------------------------------

@pytest.fixture(scope="module")
def inferences():
    """The shipped face-detect pipeline on each backend, one thread each."""
    spec = load_pipeline("face-detect")
    built = {}
    for key in BACKENDS:
        backend = backends.load(key, spec.model_for(key), {"threads": 1}, spec.path)
        built[key] = Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path,
                                          spec.labels, spec.input_size)
    return built


def detect(inference, bgr):
    result = inference(Frame(bgr, 0, time.time(), time.monotonic()))
    return result.detections


def clip_to_frame(box, bgr):
    height, width = bgr.shape[:2]
    return [min(max(box[0], 0), width), min(max(box[1], 0), height),
            min(max(box[2], 0), width), min(max(box[3], 0), height)]


@pytest.mark.parametrize("name", sorted(SCENES))
def test_onnxruntime_and_tflite_find_the_same_face_where_the_reference_puts_it(
        inferences, sample_media, name):
    # given the astronaut photo, as is or in frames the pipeline letterboxes
    bgr, zoom, left, top = scene(sample_media, name)
    # when the same BlazeFace model runs on both backends, and the reference runs on its own
    found = {key: detect(inferences[key], bgr) for key in BACKENDS}
    expected = reference_detect(bgr)
    # then each finds exactly one face, labelled face
    assert len(expected) == 1
    for key in BACKENDS:
        assert len(found[key]) == 1, key
        assert found[key].labels == ("face",) and found[key].class_ids.tolist() == [0]
    # and both backends agree: boxes within 2 px, scores within 0.02
    np.testing.assert_allclose(found["onnxruntime"].boxes, found["tflite"].boxes, atol=2.0)
    np.testing.assert_allclose(found["onnxruntime"].scores, found["tflite"].scores, atol=0.02)
    # and both put it where the reference does, in frame pixels
    reference_box, reference_score = clip_to_frame(expected[0][0], bgr), expected[0][1]
    for key in BACKENDS:
        np.testing.assert_allclose(found[key].boxes[0], reference_box, atol=2.0, err_msg=key)
        assert abs(float(found[key].scores[0]) - reference_score) < 0.02, key
    # and that is the astronaut's face: centred on it, about 100 px of the photo wide
    x1, y1, x2, y2 = reference_box
    assert abs((x1 + x2) / 2 - (FACE_XY[0] * zoom + left)) < 10 * zoom
    assert abs((y1 + y2) / 2 - (FACE_XY[1] * zoom + top)) < 10 * zoom
    assert 80 * zoom < x2 - x1 < 120 * zoom and 80 * zoom < y2 - y1 < 120 * zoom
    assert reference_score > 0.7


@pytest.mark.parametrize("photo", ["coffee", "rocket"])
def test_both_backends_and_the_reference_find_no_face_in_photos_without_one(
        inferences, sample_media, photo):
    bgr = sample_media.photo_bgr(photo)
    assert reference_detect(bgr) == []
    for key in BACKENDS:
        assert len(detect(inferences[key], bgr)) == 0, key


def test_cli_backends_print_the_same_faces_for_a_folder_of_frames(
        tmp_path, sample_media, run_agent):
    # given three frames as lossless PNGs: the photo, a 720x576 and a 1280x720 scene
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, name in enumerate(["astronaut-512x512", "astronaut-in-720x576-bars-top-bottom",
                                  "astronaut-1280x720-cropped"]):
        cv2.imwrite(str(folder / ("%02d.png" % index)), scene(sample_media, name)[0])
    # when `edgeagent run --print` runs them once per backend
    lines = {}
    for key in BACKENDS:
        run = run_agent(["run", "--no-mqtt", "--print", "--backend", key, "--pipeline",
                         "face-detect", "--source", "images://%s" % folder,
                         "--state-dir", str(tmp_path / key)])
        assert run.returncode == 0, run.stderr
        lines[key] = run.json_lines()
    # then both print one face per frame, the same boxes within 2 px, scores within 0.02
    assert [p["frame"]["index"] for p in lines["tflite"]] == [0, 1, 2]
    for ort_line, tfl_line in zip(lines["onnxruntime"], lines["tflite"]):
        assert (ort_line["backend"], tfl_line["backend"]) == ("onnxruntime", "tflite")
        assert ort_line["frame"] == tfl_line["frame"]
        [ort_face], [tfl_face] = ort_line["detections"], tfl_line["detections"]
        np.testing.assert_allclose(ort_face["box"], tfl_face["box"], atol=2.0)
        assert abs(ort_face["score"] - tfl_face["score"]) < 0.02
    assert os.path.isdir(str(tmp_path / "tflite"))
