"""`edgeagent inspect`: what it reads from real model files, what it guesses from output shapes,
and the pipeline it writes - accepted by `validate` and run by `run` on real photos.

The new user's own-model path: nudenet's trained YOLOv8n (18 classes) through
`inspect --write-pipeline` finds the astronaut's face where nudenet's own NudeDetector puts it."""

import os

import pytest

from agent.tools.model_guess import guess, yolo_cells
from agent.tools.model_info import ModelInfo, TensorInfo, read_model
from boxes import box_iou

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")


def model(name):
    return os.path.join(MODELS, name)


def write_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("device: {id: inspect-test}\nstate_dir: %s\n" % (tmp_path / "state"))
    return str(path)


# ---- reading real files ---------------------------------------------------------------------

@pytest.mark.parametrize("name, fmt, ir, opset, inputs, outputs", [
    ("face_detection_short_range.onnx", "onnx", 7, 13, [("input", (1, 128, 128, 3), "NHWC")],
     [("regressors", (1, 896, 16)), ("classificators", (1, 896, 1))]),
    ("face_detection_short_range.tflite", "tflite", None, None,
     [("input", (1, 128, 128, 3), "NHWC")],
     [("regressors", (1, 896, 16)), ("classificators", (1, 896, 1))]),
    ("efficientnet_lite0.onnx", "onnx", 7, 13, [("input", (1, 3, 224, 224), "NCHW")],
     [("logits", (1, 1000))]),
    ("yolov8n_nudenet_320.onnx", "onnx", 10, 17, [("images", ("batch", 3, "height", "width"),
                                                   "NCHW")],
     [("output0", ("batch", 22, "expr"))]),
])
def test_reads_names_shapes_layouts_and_versions(fetched_models, name, fmt, ir, opset, inputs,
                                                 outputs):
    info = read_model(model(name))
    assert info.format == fmt
    assert (info.ir_version, info.opset) == (ir, opset)
    assert info.size_bytes == os.path.getsize(model(name))
    assert [(t.name, t.shape, t.layout) for t in info.inputs] == inputs
    assert [(t.name, t.shape) for t in info.outputs] == outputs
    assert all(t.dtype == "float32" for t in info.inputs + info.outputs)


def test_dynamic_axes_and_ultralytics_metadata(fetched_models):
    info = read_model(model("yolov8n_nudenet_320.onnx"))
    assert info.inputs[0].dynamic_axes == {0: "batch", 2: "height", 3: "width"}
    assert info.trained_size == (320, 320)
    assert len(info.class_names) == 18 and info.class_names[1] == "FACE_FEMALE"


# ---- guessing from shapes -------------------------------------------------------------------

def fake_info(outputs, image=(1, 3, 640, 640), metadata=None):
    return ModelInfo("m.onnx", "onnx", 1, [TensorInfo("images", image, "float32")],
                     [TensorInfo("out%d" % i, s, "float32") for i, s in enumerate(outputs)],
                     metadata=metadata or {})


@pytest.mark.parametrize("outputs, image, task, decoder, classes", [
    ([(1, 84, 8400)], (1, 3, 640, 640), "detect", "yolov8", 80),       # Ultralytics v8/v11
    ([(1, 8400, 84)], (1, 3, 640, 640), "detect", "yolov8", 80),       # transposed v8
    ([(1, 25200, 85)], (1, 3, 640, 640), "detect", "yolov5", 80),      # YOLOv5: 3 anchors/cell
    ([(1, 6300, 6)], (1, 3, 320, 320), "detect", "yolov5", 1),         # one-class YOLOv5 at 320
    ([(1, 85, 2100)], (1, 3, 320, 320), "detect", "yolov8", 81),       # 85 rows, 1 box per cell
    ([(1, 22, -1)], (-1, 3, -1, -1), "detect", "yolov8", 18),          # dynamic, rows first
    ([(1, 1000)], (1, 3, 224, 224), "classify", "classify", 1000),
    ([(1, 10, 1, 1)], (1, 3, 32, 32), "classify", "classify", 10),
    ([(1, 896, 16), (1, 896, 1)], (1, 128, 128, 3), "detect", "blazeface", 1),
    ([(1, 2304, 1), (1, 2304, 16)], (1, 192, 192, 3), "detect", "blazeface", 1),
    ([(1, 10, 4), (1, 10), (1, 10), (1,)], (1, 300, 300, 3), "detect", "ssd", None),
    ([(1, 300, 6)], (1, 3, 640, 640), "unknown", "", None),           # NMS inside the model
    ([(1, 3, 80, 80, 85)], (1, 3, 640, 640), "unknown", "", None),    # raw v5 grid, no decode
])
def test_guess_from_output_shapes(outputs, image, task, decoder, classes):
    found = guess(fake_info(outputs, image))
    assert (found.task, found.decoder, found.num_classes) == (task, decoder, classes), found.reason


def test_names_metadata_breaks_a_tie_the_shape_cannot():
    # 85 rows and a box count that matches no grid: 80 names say YOLOv5, 81 say YOLOv8
    v5 = guess(fake_info([(1, 85, 1000)], metadata={"names": repr({i: "c" for i in range(80)})}))
    v8 = guess(fake_info([(1, 85, 1000)], metadata={"names": repr({i: "c" for i in range(81)})}))
    assert (v5.decoder, v5.num_classes) == ("yolov5", 80)
    assert (v8.decoder, v8.num_classes) == ("yolov8", 81)


@pytest.mark.parametrize("width, height, cells", [(640, 640, 8400), (320, 320, 2100),
                                                  (640, 480, 6300), (100, 100, 234)])
def test_yolo_cells(width, height, cells):
    assert yolo_cells(width, height) == cells


def test_dynamic_input_without_metadata_says_the_size_is_a_default():
    found = guess(fake_info([(1, 22, -1)], image=(-1, 3, -1, -1)))
    assert found.input_size == (640, 640)
    assert any("is a default" in c for c in found.checks)


# ---- the written pipeline runs --------------------------------------------------------------

def inspect_write(run_agent, tmp_path, name, *extra):
    out = str(tmp_path / (os.path.splitext(name)[0] + ".yaml"))
    done = run_agent(["inspect", model(name), "--write-pipeline", out] + list(extra))
    assert done.returncode == 0, done.stderr
    assert "guess     task" in done.stdout
    return out


def run_on(run_agent, tmp_path, pipeline, images_dir, *extra):
    done = run_agent(["run", "--pipeline", pipeline, "--source", "images://" + images_dir,
                      "--no-mqtt", "--print", "--state-dir", str(tmp_path / "state"),
                      "--log-level", "warning"] + list(extra), timeout_s=120)
    assert done.returncode == 0, done.stderr
    return done.json_lines()


def test_nudenet_yolov8n_finds_the_face_where_nudenet_does(fetched_models, run_agent, tmp_path,
                                                           sample_media):
    # given: a new user's trained Ultralytics export and nothing else
    import cv2
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = str(photos / "astronaut.png")
    cv2.imwrite(photo, sample_media.photo_bgr("astronaut"))
    # when: inspect writes the pipeline, validate accepts it, run runs it
    pipeline = inspect_write(run_agent, tmp_path, "yolov8n_nudenet_320.onnx")
    text = open(pipeline).read()
    assert "input_size: [320, 320]" in text and "type: yolov8" in text and "CHECK" in text
    checked = run_agent(["validate", "--config", write_config(tmp_path), "--pipeline", pipeline])
    assert checked.returncode == 0, checked.stderr
    results = run_on(run_agent, tmp_path, pipeline, str(photos))
    # then: our FACE_FEMALE box is where nudenet's own detector puts it
    faces = [d for d in results[0]["detections"] if d["label"] == "FACE_FEMALE"]
    theirs = nudenet_faces(photo)
    assert len(faces) == 1 and len(theirs) == 1
    assert box_iou(faces[0]["box"], theirs[0]) > 0.9, (faces, theirs)
    assert faces[0]["score"] > 0.5


def nudenet_faces(photo):
    """FACE_FEMALE boxes [x1, y1, x2, y2] from nudenet's NudeDetector (its own preprocessing
    and decoding); where the nudenet package is absent (the Python 3.8 device suite), from the
    plain-loop reference decoder of test_yolov8_real_model run on the same model."""
    import cv2
    try:
        from nudenet import NudeDetector
    except ImportError:
        from test_yolov8_real_model import reference_yolov8
        found = reference_yolov8(model("yolov8n_nudenet_320.onnx"), cv2.imread(photo), 320,
                                 0.25, 0.45, 100)
        return [box for cls, _, box in found if cls == 1]
    return [[x, y, x + w, y + h] for x, y, w, h in
            (d["box"] for d in NudeDetector().detect(photo) if d["class"] == "FACE_FEMALE")]


def test_blazeface_and_classifier_pipelines_run(fetched_models, run_agent, tmp_path,
                                                sample_images_dir, sample_media):
    face = inspect_write(run_agent, tmp_path, "face_detection_short_range.tflite")
    classify = inspect_write(run_agent, tmp_path, "efficientnet_lite0.onnx", "--labels",
                             model("imagenet1000.txt"))
    faces = {r["frame"]["index"]: r for r in run_on(run_agent, tmp_path, face, sample_images_dir)}
    # images:// sorts astronaut, chelsea, coffee: one face in the first photo only
    assert list(faces) == [0] and len(faces[0]["detections"]) == 1
    fx, fy = sample_media.ASTRONAUT_FACE_XY
    x1, y1, x2, y2 = faces[0]["detections"][0]["box"]
    assert x1 < fx < x2 and y1 < fy < y2
    # the guessed torchvision normalization is wrong for this TF-style model (mean 127, std
    # 128), the CHECK lines say so; with the right numbers it names the coffee cup
    text = open(classify).read()
    assert "CHECK" in text and "labels_file" in text
    fixed = text.replace("[123.675, 116.28, 103.53]", "[127, 127, 127]").replace(
        "[58.395, 57.12, 57.375]", "[128, 128, 128]")
    open(classify, "w").write(fixed)
    labels = [r["classifications"][0]["label"] for r in
              run_on(run_agent, tmp_path, classify, sample_images_dir)]
    assert labels[2] == "espresso", labels


# ---- bad input: one line --------------------------------------------------------------------

@pytest.mark.parametrize("name, content, says", [
    ("garbage.onnx", b"this is not a model\n", "onnx"),
    ("truncated.onnx", None, "onnx"),
    ("notes.txt", b"hello", "unknown model format (extension '.txt')"),
    ("README", b"hello", "unknown model format (no extension)"),
    ("empty.tflite", b"", "tflite"),
])
def test_bad_model_files_get_one_line(run_agent, tmp_path, fetched_models, name, content, says):
    path = tmp_path / name
    if content is None:
        content = open(model("yolov8n_nudenet_320.onnx"), "rb").read()[:5000]
    path.write_bytes(content)
    done = run_agent(["inspect", str(path)])
    assert done.returncode == 3, done.stderr
    lines = done.stderr_lines()
    assert len(lines) == 1 and lines[0].startswith("edgeagent inspect: model error: ")
    assert says in lines[0].lower()


def test_missing_model_and_mismatched_labels(run_agent, tmp_path, fetched_models):
    missing = run_agent(["inspect", str(tmp_path / "nope.onnx")])
    assert missing.returncode == 3 and "not found" in missing.stderr
    folder = run_agent(["inspect", str(tmp_path)])
    assert folder.returncode == 3
    assert folder.stderr_lines() == ["edgeagent inspect: model error: %s: is a folder; give the "
                                     "model file in it" % tmp_path]
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")
    out = tmp_path / "p.yaml"
    done = run_agent(["inspect", model("yolov8n_nudenet_320.onnx"), "--write-pipeline", str(out),
                      "--labels", str(labels)])
    assert done.returncode == 2
    assert done.stderr_lines() == ["edgeagent inspect: config error: %s: 3 labels, but the model "
                                   "has 18 classes; one name per class, in class-id order"
                                   % labels]
    assert not out.exists()


def test_reads_a_tensorrt_engine_through_the_fake_tensorrt(fake, tmp_path):
    # the fake tensorrt (tests/fakes, 8.x bindings and 10.x tensors APIs) serializes the ONNX
    # model's real I/O into its engine; inspect reads them back through the backend
    import shutil
    from agent.backends.tensorrt.engine_build import run_build_engine
    from fakes.gpu import FACE_ONNX
    built = run_build_engine(FACE_ONNX, {"precision": "fp16", "cache_dir": str(tmp_path)},
                             "test.yaml")
    engine = str(tmp_path / "face.engine")
    shutil.copy(built, engine)
    info = read_model(engine)
    assert info.format == "tensorrt" and info.runtime.startswith("TensorRT")
    assert [(t.name, t.shape) for t in info.inputs] == [("input", (1, 128, 128, 3))]
    assert [(t.name, t.shape) for t in info.outputs] == [("regressors", (1, 896, 16)),
                                                         ("classificators", (1, 896, 1))]
    assert (guess(info).decoder, guess(info).num_classes) == ("blazeface", 1)
