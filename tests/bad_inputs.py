"""The bad-input cases of tests/test_cli_errors.py: each builds one mistake on top of an
otherwise working run, and returns (extra argv, exit code, fragments the one line must hold)."""

import os

import cv2
import numpy as np

from conftest import MODELS, write_file as write, write_pipeline as pipeline

BLAZEFACE_ONNX = os.path.join(MODELS, "face_detection_short_range.onnx")
BLAZEFACE_TFLITE = os.path.join(MODELS, "face_detection_short_range.tflite")
CONFIG_ERROR, MODEL_ERROR, SOURCE_ERROR, OUTPUT_ERROR = 2, 3, 5, 6


def garbage(folder, name):
    path = folder / name
    path.write_bytes(os.urandom(4096) + b"not a model")
    return str(path)


# Each case builds its files in tmp_path and returns
# (extra CLI args, exit code, fragments the one error line must contain).
def missing_onnx(tmp_path):
    model = str(tmp_path / "gone.onnx")
    return (["--pipeline", pipeline(tmp_path, {"onnxruntime": model}), "--backend", "onnxruntime"],
            MODEL_ERROR, ["model error", model, "model file not found"])


def missing_tflite(tmp_path):
    model = str(tmp_path / "gone.tflite")
    return (["--pipeline", pipeline(tmp_path, {"tflite": model}), "--backend", "tflite"],
            MODEL_ERROR, ["model error", model, "model file not found"])


def corrupt_onnx(tmp_path):
    model = garbage(tmp_path, "junk.onnx")
    return (["--pipeline", pipeline(tmp_path, {"onnxruntime": model}), "--backend", "onnxruntime"],
            MODEL_ERROR, ["model error", model, "onnxruntime cannot load it"])


def corrupt_tflite(tmp_path):
    model = garbage(tmp_path, "junk.tflite")
    return (["--pipeline", pipeline(tmp_path, {"tflite": model}), "--backend", "tflite"],
            MODEL_ERROR, ["model error", model, "cannot load it as a TFLite model"])


def input_size_contradicts_fixed_model(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "input_size: [320, 320]\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            ["model error", path, "320x320", "128x128"])


def decoder_contradicts_model(tmp_path):
    path = pipeline(tmp_path, {"tflite": BLAZEFACE_TFLITE}, decoder="decoder: {type: yolov8}\n")
    return (["--pipeline", path, "--backend", "tflite"], MODEL_ERROR,
            ["model error", "decoder yolov8 expects", "'regressors' [1, 896, 16]"])


def bad_yaml_config(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {port: 1883\n")
    return ["--config", path], CONFIG_ERROR, ["config error", path, "line 2", "not valid YAML"]


def bad_yaml_pipeline(tmp_path):
    path = write(tmp_path, "pipe.yaml", "name: x\nmodels: [onnxruntime\n")
    return ["--pipeline", path], CONFIG_ERROR, ["config error", path, "not valid YAML"]


def missing_config(tmp_path):
    path = str(tmp_path / "nowhere.yaml")
    return ["--config", path], CONFIG_ERROR, ["config error", path, "cannot read"]


def unknown_config_key(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {host: localhost}\npipline: face-detect\n")
    return ["--config", path], CONFIG_ERROR, [path, "pipline: unknown key", "pipeline"]


def unknown_nested_config_key(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {hots: localhost}\n")
    return ["--config", path], CONFIG_ERROR, [path, "mqtt.hots: unknown key", "host"]


def unknown_pipeline_key(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "colour: rgb\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "colour: unknown key", "preprocess"]


def unknown_preprocess_key(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "preprocess: {colour: rgb}\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "preprocess.colour: unknown key"]


def unknown_profile_key(tmp_path):
    path = write(tmp_path, "myboard.yaml", "name: myboard\ndescription: test board\n"
                 "backends: [onnxruntime]\nbakends: [tflite]\n")
    return ["--profile", path], CONFIG_ERROR, [path, "bakends: unknown key", "backends"]


def wrong_type_config(tmp_path):
    path = write(tmp_path, "config.yaml", "mqtt: {port: eighteen}\n")
    return ["--config", path], CONFIG_ERROR, [path, "mqtt.port = 'eighteen'", "must be an integer"]


def wrong_type_config_bool(tmp_path):
    path = write(tmp_path, "config.yaml", "camera: {loop: sometimes}\n")
    return ["--config", path], CONFIG_ERROR, [path, "camera.loop = 'sometimes'", "true or false"]


def wrong_type_pipeline(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX}, "input_size: big\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "input_size = 'big'", "must be a list"]


def wrong_type_profile(tmp_path):
    path = write(tmp_path, "myboard.yaml", "name: myboard\ndescription: test board\n"
                 "backends: [onnxruntime]\ncamera: {width: wide}\n")
    return ["--profile", path], CONFIG_ERROR, [path, "camera.width = 'wide'"]


def unknown_profile(tmp_path):
    return ["--profile", "jetson-nanoo"], CONFIG_ERROR, ["'jetson-nanoo'", "jetson-nano,"]


def unknown_pipeline(tmp_path):
    return ["--pipeline", "face-detekt"], CONFIG_ERROR, ["'face-detekt'", "face-detect"]


def missing_pipeline_file(tmp_path):
    path = str(tmp_path / "none.yaml")
    return ["--pipeline", path], CONFIG_ERROR, [path, "pipeline file not found"]


def unknown_backend(tmp_path):
    return ["--backend", "tensorflow"], CONFIG_ERROR, ["tensorflow", "unknown backend",
                                                       "onnxruntime, tflite"]


def unknown_backend_in_config(tmp_path):
    path = write(tmp_path, "config.yaml", "backend: openvino\n")
    return ["--config", path], CONFIG_ERROR, [path, "backend = 'openvino'", "tflite"]


def missing_video(tmp_path):
    uri = "file://%s" % (tmp_path / "gone.avi")
    return ["--source", uri], SOURCE_ERROR, ["source error", uri, "file missing"]


def undecodable_video(tmp_path):
    uri = "file://" + garbage(tmp_path, "junk.avi")
    return ["--source", uri], SOURCE_ERROR, ["source error", uri, "cannot decode"]


def unknown_scheme(tmp_path):
    return ["--source", "ftp://cam/1"], SOURCE_ERROR, ["ftp://cam/1", "unknown source scheme 'ftp'"]


def state_dir_is_a_file(tmp_path):
    path = write(tmp_path, "state", "a file, not a folder\n")
    return ["--state-dir", path], OUTPUT_ERROR, ["output error", "state_dir " + path]


def state_dir_under_a_file(tmp_path):
    path = os.path.join(write(tmp_path, "state", "a file\n"), "edgeagent")
    return ["--state-dir", path], OUTPUT_ERROR, ["state_dir " + path, "cannot create it"]


def num_classes_contradicts_model(tmp_path):
    """Found only when the first output arrives, in the inference thread."""
    model = os.path.join(MODELS, "yolov8n_nudenet_320.onnx")
    path = pipeline(tmp_path, {"onnxruntime": model}, "input_size: [320, 320]\n",
                    decoder="decoder: {type: yolov8, num_classes: 80}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            ["model error", "num_classes 80", "[22, 2100]", "decoder.num_classes"])


def corrupt_image_in_folder(tmp_path):
    """Found only when the capture thread reaches the broken file."""
    folder = tmp_path / "pictures"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((64, 64, 3), 90, np.uint8))
    broken = garbage(folder, "b.jpg")
    return (["--source", "images://%s" % folder], SOURCE_ERROR,
            ["source error", broken, "cannot decode image"])


NUDENET = os.path.join(MODELS, "yolov8n_nudenet_320.onnx")    # a trained YOLOv8: 18 classes


def unknown_decoder_key(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": BLAZEFACE_ONNX},
                    decoder="decoder: {type: blazeface, score_treshold: 0.5}\n")
    return ["--pipeline", path], CONFIG_ERROR, [path, "decoder.score_treshold: unknown key",
                                                "score_threshold"]


def labels_count_differs_from_model_classes(tmp_path):
    labels = ", ".join("class%d" % i for i in range(17))
    path = pipeline(tmp_path, {"onnxruntime": NUDENET},
                    "input_size: [320, 320]\nlabels: [%s]\n" % labels,
                    decoder="decoder: {type: yolov8}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            [path, "labels has 17 labels", "has 18 classes", "[1, 22, 2100]"])


def yolov5_decoder_on_a_yolov8_export(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": NUDENET}, "input_size: [320, 320]\n",
                    decoder="decoder: {type: yolov5}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            [path, "decoder.type yolov5 expects", "YOLOv8's layout", "decoder.type: yolov8"])


def dynamic_model_without_input_size(tmp_path):
    path = pipeline(tmp_path, {"onnxruntime": NUDENET}, decoder="decoder: {type: yolov8}\n")
    return (["--pipeline", path, "--backend", "onnxruntime"], MODEL_ERROR,
            [path, "dynamic input size", "set input_size: [width, height]"])


def unknown_source_key(tmp_path):
    return (["--source", "synthetic://?colour=red"], SOURCE_ERROR,
            ["unknown query key 'colour' for synthetic:// sources"])


def bad_rtsp_transport(tmp_path):
    return (["--source", "rtsp://127.0.0.1:9/cam?rtsp_transport=quic"], SOURCE_ERROR,
            ["rtsp_transport=quic must be tcp or udp"])


def non_utf8_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_bytes(b"device: {id: caf\xe9}\n")         # Latin-1, as an old editor saves it
    return ["--config", str(path)], CONFIG_ERROR, [str(path), "not UTF-8 text", "0xe9"]


def reconnect_start_above_its_cap(tmp_path):
    path = write(tmp_path, "config.yaml", "camera: {reconnect_initial_s: 5, reconnect_max_s: 2}\n")
    return ["--config", path], CONFIG_ERROR, [path, "camera.reconnect_initial_s = 5.0",
                                              "must not exceed camera.reconnect_max_s"]


# Mistakes found by running a frame: by the blank frame before the first real one
# (num_classes), or when the capture thread reaches a broken picture (validate reads them all).
RUN_TIME_CASES = [num_classes_contradicts_model, corrupt_image_in_folder]

CASES = [missing_onnx, missing_tflite, corrupt_onnx, corrupt_tflite,
         input_size_contradicts_fixed_model, decoder_contradicts_model, bad_yaml_config,
         bad_yaml_pipeline, missing_config, unknown_config_key, unknown_nested_config_key,
         unknown_pipeline_key, unknown_preprocess_key, unknown_profile_key, wrong_type_config,
         wrong_type_config_bool, wrong_type_pipeline, wrong_type_profile, unknown_profile,
         unknown_pipeline, missing_pipeline_file, unknown_backend, unknown_backend_in_config,
         missing_video, undecodable_video, unknown_scheme, state_dir_is_a_file,
         state_dir_under_a_file, unknown_decoder_key, labels_count_differs_from_model_classes,
         yolov5_decoder_on_a_yolov8_export, dynamic_model_without_input_size, unknown_source_key,
         bad_rtsp_transport, non_utf8_config, reconnect_start_above_its_cap]
