"""The engine cache and builder through the fake tensorrt / pycuda of tests/fakes/: an engine is
reused only when every part of its key matches, rebuilt when anything differs or the file is
damaged, written atomically, and INT8 engines are calibrated from real photos only."""

import json
import os
import shutil
import tempfile

import cv2
import numpy as np
import pytest
import skimage.data

from agent import backends
from agent.backends.tensorrt.engine_build import run_build_engine
from agent.errors import ConfigError
from agent.backends.tensorrt import cache as engine_cache
from fakes.gpu import FACE_ONNX, as_unprivileged_user, face_preprocessor, write_dynamic_onnx

WHERE = "device_profiles/test.yaml"


def options(tmp_path, **extra):
    opts = {"precision": "fp16", "workspace_mb": 64, "dla_core": None, "build_on_start": True,
            "cache_dir": str(tmp_path / "engines"), "input_size": [96, 160]}
    opts.update(extra)
    return opts


def engines(tmp_path):
    return sorted(n for n in os.listdir(str(tmp_path / "engines")) if n.endswith(".engine"))


def sidecar_of(engine_path):
    with open(engine_path[:-len(".engine")] + ".json") as f:
        return json.load(f)


def load_and_close(onnx_path, opts):
    backend = backends.load("tensorrt", onnx_path, opts, WHERE)
    backend.close()
    return backend.engine_path


def test_second_start_uses_the_cached_engine(fake, tmp_path):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    first = load_and_close(onnx_path, options(tmp_path))
    second = load_and_close(onnx_path, options(tmp_path))
    assert first == second and trt._fake["builds"] == 1


def test_engine_name_and_sidecar_carry_every_key_part(fake, tmp_path):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    path = load_and_close(onnx_path, options(tmp_path))
    sidecar = sidecar_of(path)
    assert sidecar["parts"] == {
        "cache_format": 1, "onnx_sha256": engine_cache.sha256_file(onnx_path),
        "tensorrt": trt.__version__, "gpu": "NVIDIA Tegra X1", "compute_capability": "5.3",
        "sm_count": 1, "precision": "fp16", "input_size": [96, 160], "dla_core": None}
    assert os.path.basename(path) == "dyn-fp16-%s.engine" % sidecar["key"][:12]
    assert sidecar["engine_sha256"] == engine_cache.sha256_file(path)


def _change(part, tmp_path, trt, driver, opts, monkeypatch):
    """Changes one key part; returns the value the new sidecar must record for it."""
    if part == "onnx_sha256":
        return engine_cache.sha256_file(write_dynamic_onnx(str(tmp_path / "dyn.onnx"), "v2"))
    if part == "tensorrt":
        monkeypatch.setattr(trt, "__version__", trt.__version__ + ".1")
        return trt.__version__
    if part in ("gpu", "compute_capability", "sm_count"):
        name, cc, sms = driver._fake["devices"][0]
        new = {"gpu": ("NVIDIA Tegra X2", cc, sms), "compute_capability": (name, (6, 2), sms),
               "sm_count": (name, cc, 2)}[part]
        driver._fake["devices"] = [new]
        return {"gpu": new[0], "compute_capability": "6.2", "sm_count": 2}[part]
    if part == "precision":
        opts["precision"] = "fp32"
    elif part == "input_size":
        opts["input_size"] = [128, 128]
    elif part == "dla_core":
        trt._fake["dla_cores"] = 2
        opts["dla_core"] = 0
    return opts[part]


@pytest.mark.parametrize("part", ["onnx_sha256", "tensorrt", "gpu", "compute_capability",
                                  "sm_count", "precision", "input_size", "dla_core"])
def test_a_change_in_any_key_part_builds_a_new_engine(fake, tmp_path, monkeypatch, part):
    trt, driver = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    opts = options(tmp_path)
    first = load_and_close(onnx_path, opts)
    # when: one part of the key differs
    wanted = _change(part, tmp_path, trt, driver, opts, monkeypatch)
    second = load_and_close(onnx_path, opts)
    # then: a second engine, recorded with the new value; the old one is left alone
    assert trt._fake["builds"] == 2 and second != first
    assert sidecar_of(second)["parts"][part] == wanted
    assert engines(tmp_path) == sorted(os.path.basename(p) for p in (first, second))


def test_sidecar_that_does_not_match_is_rebuilt_not_loaded(fake, tmp_path):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    path = load_and_close(onnx_path, options(tmp_path))
    sidecar = sidecar_of(path)
    sidecar["parts"]["gpu"] = "Orin"          # an engine copied from another board
    with open(path[:-len(".engine")] + ".json", "w") as f:
        json.dump(sidecar, f)
    assert load_and_close(onnx_path, options(tmp_path)) == path
    assert trt._fake["builds"] == 2 and sidecar_of(path)["parts"]["gpu"] == "NVIDIA Tegra X1"


def test_corrupt_engine_file_is_rebuilt(fake, tmp_path):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    path = load_and_close(onnx_path, options(tmp_path))
    with open(path, "r+b") as f:
        f.truncate(10)                         # power cut during a copy
    backend = backends.load("tensorrt", onnx_path, options(tmp_path), WHERE)
    assert trt._fake["builds"] == 2 and backend.input_spec.shape == (1, 3, 96, 160)
    backend.close()


def test_engine_tensorrt_refuses_despite_a_matching_sidecar_is_rebuilt(fake, tmp_path):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    path = load_and_close(onnx_path, options(tmp_path))
    with open(path, "wb") as f:
        f.write(b"garbage that deserializes to None")
    sidecar = sidecar_of(path)
    sidecar["engine_sha256"] = engine_cache.sha256_file(path)
    with open(path[:-len(".engine")] + ".json", "w") as f:
        json.dump(sidecar, f)
    assert load_and_close(onnx_path, options(tmp_path)) == path
    assert trt._fake["builds"] == 2


def test_engine_and_sidecar_are_written_atomically(fake, tmp_path, monkeypatch):
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    path = load_and_close(onnx_path, options(tmp_path))
    before = open(path, "rb").read()
    # when: the rename of a rebuild fails (disk full, power cut before rename)
    monkeypatch.setattr(os, "replace", _failing_replace)
    with pytest.raises(OSError, match="No space left"):
        run_build_engine(onnx_path, options(tmp_path), WHERE, force=True)
    # then: the old engine is intact and no temporary file is left behind
    assert open(path, "rb").read() == before
    assert not [n for n in os.listdir(str(tmp_path / "engines")) if n.startswith(".tmp-")]


def _failing_replace(src, dst):
    raise OSError(28, "No space left on device")


def test_timing_cache_is_kept_between_builds(fake, tmp_path):
    trt, _ = fake
    onnx_path = write_dynamic_onnx(str(tmp_path / "dyn.onnx"))
    run_build_engine(onnx_path, options(tmp_path), WHERE)
    timing = [n for n in os.listdir(str(tmp_path / "engines")) if n.startswith("timing-")]
    assert timing == ["timing-trt%s-NVIDIA_Tegra_X1_cc5_3_sm1.cache" % trt.__version__]
    run_build_engine(onnx_path, options(tmp_path, precision="fp32"), WHERE)
    # the second build started from the first build's tactic timings
    assert trt._fake["last_config"].get_timing_cache()._entries == ["tactics-1", "tactics-2"]


@pytest.mark.parametrize("broken", ["file_in_the_way", "read_only_dir"])
def test_unwritable_cache_dir_is_a_config_error_naming_dir_and_fix(broken):
    # a world-readable base (not pytest's 0700 tmp) so the check can run as nobody under root
    base = tempfile.mkdtemp(prefix="edgeagent-cache-test-")
    os.chmod(base, 0o755)
    if broken == "file_in_the_way":
        open(os.path.join(base, "state"), "w").close()
        cache_dir = os.path.join(base, "state", "engines")
    else:
        cache_dir = os.path.join(base, "engines")
        os.mkdir(cache_dir, 0o555)
        os.chmod(cache_dir, 0o555)
    try:
        message = as_unprivileged_user(lambda: _writable_error(cache_dir))
    finally:
        shutil.rmtree(base)
    assert message.startswith("config error: TensorRT engine cache %s is not writable" % cache_dir)
    assert "StateDirectory=edgeagent" in message and "chown -R" in message


def _writable_error(cache_dir):
    try:
        engine_cache.ensure_writable(cache_dir)
    except ConfigError as why:
        return str(why)
    return "no error"


def test_unwritable_cache_dir_stops_the_backend_with_the_fix(fake, tmp_path):
    (tmp_path / "state").write_text("not a directory")
    opts = options(tmp_path, cache_dir=str(tmp_path / "state" / "engines"))
    with pytest.raises(ConfigError, match="StateDirectory=edgeagent"):
        backends.load("tensorrt", FACE_ONNX, opts, WHERE)


@pytest.mark.parametrize("calibration", ["none", "empty_dir", "no_images"])
def test_int8_without_calibration_images_is_a_config_error(fake, tmp_path, calibration):
    trt, _ = fake
    folder = tmp_path / "calib"
    folder.mkdir()
    if calibration == "no_images":
        (folder / "notes.txt").write_text("frames go here")
    calibration_dir = None if calibration == "none" else str(folder)
    with pytest.raises(ConfigError, match="int8|no images"):
        run_build_engine(FACE_ONNX, options(tmp_path, precision="int8", input_size=None,
                                            calibration_dir=calibration_dir,
                                            calibration_preprocess=lambda image: image), WHERE)
    assert trt._fake["builds"] == 0            # never built with made-up calibration data


PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def test_int8_calibrates_from_real_photos_through_the_pipeline_preprocessing(fake, tmp_path):
    trt, _ = fake
    # given: four photos, written as a deployment would collect them (jpg and png)
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, name in enumerate(PHOTOS):
        rgb = getattr(skimage.data, name)()
        cv2.imwrite(str(folder / ("%d-%s.%s" % (i, name, "png" if i % 2 else "jpg"))),
                    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    preprocessor = face_preprocessor()
    opts = options(tmp_path, precision="int8", input_size=None, calibration_dir=str(folder),
                   calibration_preprocess=lambda image: preprocessor(image)[0])
    # when
    engine_path = run_build_engine(FACE_ONNX, opts, WHERE)
    # then: TensorRT saw each photo exactly as the pipeline would feed it, in file order
    reference = face_preprocessor()
    expected = [reference(cv2.imread(str(folder / n)))[0].copy() for n in sorted(os.listdir(
        str(folder)))]
    batches = trt._fake["calibration_batches"]
    assert len(batches) == len(PHOTOS)
    for got, want in zip(batches, expected):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(batches[0], batches[1])
    calib = engine_path[:-len(".engine")] + ".calib"
    assert open(calib, "rb").read() == b"fake-calibration-table"
    assert {"INT8", "FP16"} <= {f.name for f in trt._fake["last_config"]._flags}


def test_int8_rebuild_reuses_the_calibration_cache(fake, tmp_path):
    trt, _ = fake
    folder = tmp_path / "calib"
    folder.mkdir()
    cv2.imwrite(str(folder / "coffee.jpg"), skimage.data.coffee()[:, :, ::-1])
    preprocessor = face_preprocessor()
    opts = options(tmp_path, precision="int8", input_size=None, calibration_dir=str(folder),
                   calibration_preprocess=preprocessor)   # gives (tensor, transform) tuples
    run_build_engine(FACE_ONNX, opts, WHERE)
    run_build_engine(FACE_ONNX, opts, WHERE, force=True)
    assert trt._fake["builds"] == 2 and len(trt._fake["calibration_batches"]) == 1


def test_calibration_preprocess_with_the_wrong_shape_is_a_config_error(fake, tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    cv2.imwrite(str(folder / "coffee.jpg"), skimage.data.coffee()[:, :, ::-1])
    opts = options(tmp_path, precision="int8", input_size=None, calibration_dir=str(folder),
                   calibration_preprocess=lambda image: np.zeros((1, 3, 64, 64), np.float32))
    with pytest.raises(ConfigError, match=r"gives shape \(1, 3, 64, 64\).*\(1, 128, 128, 3\)"):
        run_build_engine(FACE_ONNX, opts, WHERE)


def test_error_inside_calibration_fails_the_build_and_writes_no_engine(fake, tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for name in PHOTOS[:3]:
        cv2.imwrite(str(folder / (name + ".jpg")), getattr(skimage.data, name)()[:, :, ::-1])
    preprocessor, seen, states = face_preprocessor(), [], []

    def preprocess(image):
        seen.append(image.shape)
        if len(seen) == 2:
            raise ValueError("camera frame with an odd stride")
        return preprocessor(image)[0]

    opts = options(tmp_path, precision="int8", input_size=None, calibration_dir=str(folder),
                   calibration_preprocess=preprocess, progress=lambda *a: states.append(a[0]))
    with pytest.raises(ValueError, match="odd stride"):
        run_build_engine(FACE_ONNX, opts, WHERE)
    assert engines(tmp_path) == [] and states[-1] == "engine_build_failed"
    # the table TensorRT made from the one image before the error must not be reused later
    assert not [n for n in os.listdir(str(tmp_path / "engines")) if n.endswith(".calib")]
