"""Preprocessing: letterbox/stretch geometry, normalization, quantization and layouts, checked
against an independent straightforward implementation (copyMakeBorder + numpy math)."""

import cv2
import numpy as np
import pytest

from agent.errors import ConfigError, ModelError, SourceError
from agent.processing.preprocess import PreprocessConfig, Preprocessor, letterbox_box
from agent.types import TensorSpec

YOLO = {"mean": [0, 0, 0], "std": [255, 255, 255]}
MINUS_ONE_TO_ONE = {"mean": [127.5, 127.5, 127.5], "std": [127.5, 127.5, 127.5]}


def config(**keys):
    return PreprocessConfig.from_dict(keys, "pipelines/test.yaml")


def spec_for(layout, width, height, dtype="float32", quantization=None):
    shape = (1, 3, height, width) if layout == "NCHW" else (1, height, width, 3)
    return TensorSpec("images", shape, dtype, quantization)


def random_frame(width, height, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (height, width, 3)).astype(np.uint8)


def reference_tensor(image, cfg, width, height, layout, dtype, quantization=None):
    """Straightforward: resize, pad with copyMakeBorder, swap, float math, round, transpose."""
    src_h, src_w = image.shape[:2]
    if cfg.resize == "stretch":
        canvas = cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)
    else:
        new_w, new_h, left, top = letterbox_box(src_w, src_h, width, height)
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas = cv2.copyMakeBorder(resized, top, height - new_h - top, left, width - new_w - left,
                                    cv2.BORDER_CONSTANT, value=(cfg.pad_value,) * 3)
    if cfg.color == "rgb":
        canvas = canvas[:, :, ::-1]
    values = canvas.astype(np.float64)
    if np.dtype(dtype).kind == "f" or quantization:
        values = (values - np.array(cfg.mean)) / np.array(cfg.std)
    if quantization:
        info = np.iinfo(dtype)
        values = np.clip(np.rint(values / quantization[0] + quantization[1]), info.min, info.max)
    tensor = values.astype(dtype)[None]
    return tensor.transpose(0, 3, 1, 2) if layout == "NCHW" else tensor


def test_defaults_from_an_empty_section():
    # given an empty preprocess section / when parsed
    cfg = config()
    # then the documented defaults apply
    assert (cfg.resize, cfg.color, cfg.mean, cfg.std, cfg.pad_value, cfg.layout) == (
        "letterbox", "rgb", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), 114, "auto")


@pytest.mark.parametrize("keys, key_in_message", [
    ({"resise": "letterbox"}, "preprocess.resise"),
    ({"resize": "crop"}, "preprocess.resize"),
    ({"color": "gray"}, "preprocess.color"),
    ({"mean": [0, 0]}, "preprocess.mean"),
    ({"mean": [0, "a", 0]}, "preprocess.mean[1]"),
    ({"std": [1, 0, 1]}, "preprocess.std"),
    ({"pad_value": 300}, "preprocess.pad_value"),
    ({"layout": "CHW"}, "preprocess.layout"),
])
def test_bad_values_name_file_and_key(keys, key_in_message):
    # given a section with one bad key / when parsed / then a ConfigError says where and what
    with pytest.raises(ConfigError) as err:
        config(**keys)
    assert "pipelines/test.yaml" in str(err.value) and key_in_message in str(err.value)


def test_unknown_key_lists_the_allowed_keys():
    with pytest.raises(ConfigError, match="allowed keys here: color, layout, mean, pad_value"):
        config(scale=2)


@pytest.mark.parametrize("src_w, src_h", [(1280, 720), (720, 1280), (640, 480), (500, 500),
                                          (333, 777), (97, 61)])
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
@pytest.mark.parametrize("layout, width, height", [("NCHW", 640, 640), ("NHWC", 128, 128),
                                                   ("NHWC", 320, 192)])
def test_box_round_trip_within_one_pixel(src_w, src_h, resize, layout, width, height):
    # given a black frame with a white box at known source pixels
    x1, y1, x2, y2 = int(src_w * 0.3), int(src_h * 0.2), int(src_w * 0.7), int(src_h * 0.9)
    image = np.zeros((src_h, src_w, 3), np.uint8)
    image[y1:y2, x1:x2] = 255
    pre = Preprocessor(config(resize=resize, pad_value=0, **YOLO), spec_for(layout, width, height))
    # when preprocessed, and the bright area of the tensor is mapped back to the source
    tensor, transform = pre(image)
    plane = tensor[0, 0] if layout == "NCHW" else tensor[0, :, :, 0]
    ys, xs = np.nonzero(plane > 0.5)
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32)
    back = transform.to_source(found)[0]
    # then it lands on the drawn box within one pixel (of the coarser of source and model grids)
    tolerance = np.array([1 / min(transform.scale_x, 1), 1 / min(transform.scale_y, 1)] * 2)
    assert np.all(np.abs(back - np.array([x1, y1, x2, y2])) <= tolerance + 1e-3)


@pytest.mark.parametrize("src_w, src_h, expected", [
    (1280, 720, (640, 360, 0, 140)), (720, 1280, (360, 640, 140, 0)), (640, 640, (640, 640, 0, 0)),
])
def test_letterbox_centres_the_picture(src_w, src_h, expected):
    assert letterbox_box(src_w, src_h, 640, 640) == expected


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("color", ["rgb", "bgr"])
@pytest.mark.parametrize("resize", ["letterbox", "stretch"])
@pytest.mark.parametrize("norm", [YOLO, MINUS_ONE_TO_ONE,
                                  {"mean": [123.7, 116.3, 103.5], "std": [58.4, 57.1, 57.4]}])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_float_tensor_matches_reference(layout, color, resize, norm, dtype):
    # given a random 1280x720 frame and a float model input
    cfg = config(color=color, resize=resize, **norm)
    image = random_frame(1280, 720)
    pre = Preprocessor(cfg, spec_for(layout, 320, 256, dtype))
    # when preprocessed
    tensor, _ = pre(image)
    # then it is exactly the model's shape/dtype and equals the straightforward computation
    expected = reference_tensor(image, cfg, 320, 256, layout, dtype)
    assert tensor.shape == expected.shape and tensor.dtype == np.dtype(dtype)
    tol = 1e-5 if dtype == "float32" else 2e-3
    np.testing.assert_allclose(tensor.astype(np.float64), expected.astype(np.float64),
                               rtol=tol, atol=tol)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype, quantization, norm", [
    ("int8", (1 / 128, 0), MINUS_ONE_TO_ONE),
    ("int8", (1 / 255, -128), YOLO),
    ("uint8", (1 / 128, 128), MINUS_ONE_TO_ONE),
    ("uint8", (0.0123, 3), {"mean": [120, 110, 100], "std": [60, 57, 58]}),
])
def test_quantized_tensor_matches_reference(layout, dtype, quantization, norm):
    # given a quantized model input / when preprocessed
    cfg = config(**norm)
    image = random_frame(640, 480, seed=1)
    tensor, _ = Preprocessor(cfg, spec_for(layout, 224, 224, dtype, quantization))(image)
    # then q = clip(round(x_normalized / scale + zero_point)), exactly
    expected = reference_tensor(image, cfg, 224, 224, layout, dtype, quantization)
    assert tensor.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(tensor, expected)


@pytest.mark.parametrize("pixel, expected", [(0, -128), (128, 1), (255, 127), (127, -1)])
def test_int8_known_values(pixel, expected):
    # given a uniform frame, int8 input with scale 1/128 zero point 0, mean=std=127.5
    image = np.full((10, 10, 3), pixel, np.uint8)
    pre = Preprocessor(config(resize="stretch", **MINUS_ONE_TO_ONE),
                       spec_for("NHWC", 4, 4, "int8", (1 / 128, 0)))
    # then every value is round((pixel - 127.5) / 127.5 * 128), clipped to int8
    assert np.all(pre(image)[0] == expected)


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_uint8_model_gets_raw_rgb_pixels_whatever_mean_std_say(layout):
    # given a uint8 input without quantization and a pipeline written for a float model
    cfg = config(**MINUS_ONE_TO_ONE)
    image = random_frame(300, 200, seed=2)
    tensor, _ = Preprocessor(cfg, spec_for(layout, 300, 300, "uint8"))(image)
    # then the model gets plain pixels (the letterboxed, RGB-ordered frame)
    raw = config(pad_value=cfg.pad_value)
    np.testing.assert_array_equal(tensor, reference_tensor(image, raw, 300, 300, layout, "uint8"))


def test_padding_is_refilled_when_the_frame_size_changes():
    # given a preprocessor that saw a square frame filling the whole input
    pre = Preprocessor(config(pad_value=7), spec_for("NHWC", 64, 64, "uint8"))
    pre(np.full((64, 64, 3), 200, np.uint8))
    # when a wide frame comes next
    tensor, transform = pre(np.full((32, 64, 3), 200, np.uint8))
    # then its padding bands hold the pad value, not the old picture
    assert transform.pad_y == 16
    assert np.all(tensor[0, :16] == 7) and np.all(tensor[0, 48:] == 7)
    assert np.all(tensor[0, 16:48] == 200)


def test_dynamic_model_size_comes_from_the_pipeline():
    # given a model with dynamic H/W and a pipeline input size of 320x192 (width x height)
    spec = TensorSpec("images", (-1, 3, -1, -1), "float32")
    pre = Preprocessor(config(**YOLO), spec, input_size=(320, 192))
    # then tensors and the resolved spec have that size
    tensor, _ = pre(random_frame(640, 480))
    assert tensor.shape == (1, 3, 192, 320) and pre.tensor_spec.shape == (1, 3, 192, 320)


def test_dynamic_model_without_input_size_is_a_model_error():
    with pytest.raises(ModelError, match="dynamic size"):
        Preprocessor(config(), TensorSpec("images", (1, 3, -1, -1), "float32"))


def test_pipeline_size_contradicting_the_model_says_both_sizes():
    # given a 128x128 model and a pipeline asking for 320x320
    with pytest.raises(ModelError) as err:
        Preprocessor(config(), spec_for("NHWC", 128, 128), input_size=(320, 320))
    # then the message names both sizes and the fix
    assert "320x320" in str(err.value) and "128x128" in str(err.value)


@pytest.mark.parametrize("spec, cfg, match", [
    (TensorSpec("x", (1, 128, 128, 3), "int8"), {}, "without quantization"),
    (TensorSpec("x", (1, 128, 128, 3), "float64"), {}, "supported input types"),
    (TensorSpec("x", (1, 1, 128, 128), "float32"), {}, "1 channels"),
    (TensorSpec("x", (1, 128, 128, 3), "float32"), {"layout": "NCHW"}, "preprocess.layout"),
    (TensorSpec("x", (1, 1000), "float32"), {}, "image models take"),
])
def test_models_that_cannot_take_frames_are_model_errors(spec, cfg, match):
    with pytest.raises(ModelError, match=match):
        Preprocessor(config(**cfg), spec)


def test_non_bgr_frames_are_source_errors():
    pre = Preprocessor(config(), spec_for("NHWC", 32, 32))
    with pytest.raises(SourceError, match="BGR uint8"):
        pre(np.zeros((48, 64), np.uint8))
