"""PyTorch -> ONNX -> running pipeline, for real, the way docs/models.md tells users to do it:
a small classifier and a small YOLOv8-layout detector defined here, `torch.onnx.export`
(TorchScript exporter, opset 13, static NCHW shape, normalization outside the graph), then
`edgeagent inspect --write-pipeline`, `edgeagent validate`, `edgeagent run` on real photos,
compared with what torch itself computes on the same pixels."""

import os

import cv2
import numpy as np
import pytest

from boxes import box_iou

torch = pytest.importorskip("torch")   # .ci/run and `make venv` install torch==2.13.0 (CPU)
nn = torch.nn

OPSET = 13
MEAN = [123.675, 116.28, 103.53]       # torchvision's ImageNet statistics, 0..255 pixels
STD = [58.395, 57.12, 57.375]


class TinyClassifier(nn.Module):
    def __init__(self, classes=7):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(16, classes)

    def forward(self, x):
        return self.fc(torch.flatten(self.features(x), 1))


class TinyYoloV8(nn.Module):
    """Ultralytics' export layout: [1, 4 + C, N], boxes cx, cy, w, h in input pixels, class
    scores after sigmoid, one box per cell of the stride 8/16/32 grids (N = 144+36+9 at 96)."""

    def __init__(self, classes=3, size=96):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                  nn.SiLU(), nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())   # /8
        self.down16 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
        self.down32 = nn.Sequential(nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
        self.heads = nn.ModuleList(nn.Conv2d(16, 4 + classes, 1) for _ in range(3))
        grids, strides = [], []
        for stride in (8, 16, 32):
            cells = size // stride
            ys, xs = torch.meshgrid(torch.arange(cells), torch.arange(cells), indexing="ij")
            grids.append(torch.stack([xs, ys]).reshape(2, -1).float() + 0.5)
            strides.append(torch.full((1, cells * cells), float(stride)))
        self.register_buffer("grid", torch.cat(grids, 1))
        self.register_buffer("stride", torch.cat(strides, 1))

    def forward(self, x):
        p8 = self.stem(x)
        p16 = self.down16(p8)
        p32 = self.down32(p16)
        raw = torch.cat([h(p).flatten(2) for h, p in zip(self.heads, (p8, p16, p32))], 2)
        xy = (self.grid + torch.tanh(raw[:, :2])) * self.stride
        wh = torch.exp(raw[:, 2:4].clamp(-3, 2)) * self.stride * 2
        return torch.cat([xy, wh, torch.sigmoid(raw[:, 4:])], 1)


def export(module, size, path):
    module.eval()
    torch.onnx.export(module, (torch.zeros(1, 3, size, size),), path, opset_version=OPSET,
                      input_names=["images"], output_names=["output0"], dynamo=False)
    return path


def stretch(bgr, size, mean, std):
    rgb = cv2.resize(bgr, (size, size), interpolation=cv2.INTER_LINEAR)[:, :, ::-1]
    chw = (rgb.astype(np.float32) - np.float32(mean)) / np.float32(std)
    return torch.from_numpy(np.ascontiguousarray(chw.transpose(2, 0, 1)))[None]


def letterbox(bgr, size):
    height, width = bgr.shape[:2]
    scale = min(size / float(width), size / float(height))
    new_w, new_h = int(round(width * scale)), int(round(height * scale))
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + new_h, left:left + new_w] = cv2.resize(bgr, (new_w, new_h),
                                                            interpolation=cv2.INTER_LINEAR)
    chw = canvas[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(chw))[None], (new_w / float(width),
                                                                new_h / float(height), left, top)


def torch_detections(raw, mapping, threshold, iou_threshold=0.45):
    """Plain decode of the torch output: best class per column, per-class greedy NMS, boxes
    mapped back to the photo."""
    scale_x, scale_y, left, top = mapping
    rows = raw[0].numpy()
    found = []
    for n in range(rows.shape[1]):
        scores = rows[4:, n]
        best = int(scores.argmax())
        if scores[best] > threshold:
            cx, cy, w, h = rows[:4, n]
            found.append((float(scores[best]), best, [cx - w / 2, cy - h / 2, cx + w / 2,
                                                      cy + h / 2]))
    found.sort(key=lambda f: -f[0])
    kept = []
    for score, cls, box in found:
        if all(k[1] != cls or box_iou(k[2], box) <= iou_threshold for k in kept):
            kept.append((score, cls, box))
    return [(s, c, [(b[0] - left) / scale_x, (b[1] - top) / scale_y, (b[2] - left) / scale_x,
                    (b[3] - top) / scale_y]) for s, c, b in kept[:100]]


def inspect_validate_run(run_agent, tmp_path, onnx_path, images_dir, edit=None):
    pipeline = str(tmp_path / "pipeline.yaml")
    done = run_agent(["inspect", onnx_path, "--write-pipeline", pipeline])
    assert done.returncode == 0, done.stderr
    if edit:
        text = open(pipeline).read()
        open(pipeline, "w").write(edit(text))
    config = tmp_path / "config.yaml"
    config.write_text("device: {id: torch-test}\nstate_dir: %s\n" % (tmp_path / "state"))
    checked = run_agent(["validate", "--config", str(config), "--pipeline", pipeline])
    assert checked.returncode == 0, checked.stderr
    ran = run_agent(["run", "--pipeline", pipeline, "--source", "images://" + images_dir,
                     "--no-mqtt", "--print", "--state-dir", str(tmp_path / "state"),
                     "--log-level", "warning"], timeout_s=120)
    assert ran.returncode == 0, ran.stderr
    return done.stdout, ran.json_lines()


def test_classifier_from_torch_runs_and_agrees(run_agent, tmp_path, sample_images_dir):
    torch.manual_seed(0)
    net = TinyClassifier(classes=7)
    onnx_path = export(net, 64, str(tmp_path / "tiny_classifier.onnx"))
    shown, results = inspect_validate_run(run_agent, tmp_path, onnx_path, sample_images_dir)
    assert "decoder classify, 7 classes" in shown and "opset 13" in shown
    names = sorted(n for n in os.listdir(sample_images_dir))
    assert len(results) == len(names)
    for name, result in zip(names, results):
        photo = cv2.imread(os.path.join(sample_images_dir, name))
        with torch.no_grad():
            probs = torch.softmax(net(stretch(photo, 64, MEAN, STD)), 1)[0].numpy()
        ours = result["classifications"]
        top = np.argsort(-probs)[:5]
        assert [c["class_id"] for c in ours] == [int(i) for i in top], name
        np.testing.assert_allclose([c["score"] for c in ours], probs[top], atol=2e-3)


def test_yolov8_layout_detector_from_torch_runs_and_agrees(run_agent, tmp_path,
                                                           sample_images_dir):
    torch.manual_seed(1)
    net = TinyYoloV8(classes=3, size=96)
    onnx_path = export(net, 96, str(tmp_path / "tiny_yolov8.onnx"))
    photo_name = sorted(os.listdir(sample_images_dir))[0]          # astronaut
    photo = cv2.imread(os.path.join(sample_images_dir, photo_name))
    tensor, mapping = letterbox(photo, 96)
    with torch.no_grad():
        raw = net(tensor)
    # a threshold that random weights pass for a handful of boxes, well clear of any score
    scores = np.sort(raw[0, 4:].max(0).values.numpy())
    threshold = float((scores[-12] + scores[-13]) / 2)
    expected = torch_detections(raw, mapping, threshold)
    one = tmp_path / "one"
    one.mkdir()
    cv2.imwrite(str(one / photo_name), photo)

    def set_threshold(text):
        return text.replace("score_threshold: 0.25", "score_threshold: %.6f" % threshold)

    shown, results = inspect_validate_run(run_agent, tmp_path, onnx_path, str(one), set_threshold)
    assert "decoder yolov8, 3 classes" in shown and "189 boxes = one per cell" in shown
    ours = sorted(results[0]["detections"], key=lambda d: -d["score"])
    assert len(ours) == len(expected) > 0
    for got, (score, cls, box) in zip(ours, expected):
        assert got["class_id"] == cls
        assert abs(got["score"] - score) < 1e-3
        height, width = photo.shape[:2]
        clipped = np.clip(box, 0, [width, height, width, height])     # boxes stop at the frame
        np.testing.assert_allclose(got["box"], clipped, atol=1.0)
