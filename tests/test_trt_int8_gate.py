"""`build-engine --precision int8 --calibration-dir DIR` behind the INT8 gate, through the fake
TensorRT (tests/fakes). What the fake can honestly show is the procedure, not accuracy (its
kernel computes the same numbers at every precision, and no face): the held-out images never
reach the calibrator, both engines run them through the pipeline, and an INT8 engine the gate
refuses never enters the real cache. The passing path needs a real TensorRT."""

import os

import cv2
import pytest
import skimage.data

from agent.cli import main

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "moon", "page")


@pytest.fixture
def calibration_dir(tmp_path):
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, name in enumerate(PHOTOS):
        image = getattr(skimage.data, name)()
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
        cv2.imwrite(str(folder / ("%d-%s.jpg" % (i, name))), cv2.cvtColor(image,
                                                                        cv2.COLOR_RGB2BGR))
    return str(folder)


def build(tmp_path, calibration_dir, *extra):
    config = tmp_path / "config.yaml"
    config.write_text("device: {id: trt-test}\nstate_dir: %s\n" % (tmp_path / "state"))
    return main(["build-engine", "--pipeline", "face-detect", "--config", str(config),
                 "--precision", "int8", "--calibration-dir", calibration_dir] + list(extra))


def test_int8_engine_is_calibrated_without_the_held_out_images_and_judged(
        fake, tmp_path, calibration_dir, capsys):
    trt, _ = fake
    # when: the gated INT8 build runs
    code = build(tmp_path, calibration_dir)
    # then: 8 photos, every 4th held out: the calibrator saw 6, both engines ran the other 2
    assert len(trt._fake["calibration_batches"]) == 6
    err = capsys.readouterr().err.splitlines()[-1]
    # and the fake's kernel output decodes to no face at all, so there is nothing to agree on:
    # the gate refuses rather than pass an engine on agreement about nothing
    assert code == 3
    assert err.startswith("edgeagent build-engine: model error: face-detect: INT8 engine "
                          "refused by the INT8 accuracy gate (the reference model finds "
                          "nothing on the held-out images")
    assert "over 2 held-out images" in err and "nothing was added to the engine cache" in err
    engines = sorted(n for n in os.listdir(str(tmp_path / "state" / "engines"))
                     if n.endswith(".engine"))
    assert [n.split("-")[-2] for n in engines] == ["fp16"]      # the reference stays cached


def test_too_few_images_to_hold_some_out(fake, tmp_path, calibration_dir):
    few = tmp_path / "few"
    few.mkdir()
    os.rename(os.path.join(calibration_dir, "0-astronaut.jpg"), str(few / "a.jpg"))
    assert build(tmp_path, str(few)) == 2
