"""The wheel carries the shipped data: an installed agent finds its pipelines, profiles and
committed models outside the repo."""

import os
import subprocess
import sys
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_wheel_carries_pipelines_profiles_and_committed_models_only(agent_wheel):
    # given the wheel built from this checkout
    names = set(zipfile.ZipFile(str(agent_wheel)).namelist())
    # then every shipped pipeline and profile is inside, with the committed models
    for kind in ("pipelines", "device_profiles"):
        for name in os.listdir(os.path.join(REPO, kind)):
            assert "agent/resources/%s/%s" % (kind, name) in names
    assert "agent/resources/models/face_detection_short_range.onnx" in names
    assert "agent/resources/models/face_detection_short_range.tflite" in names
    assert "agent/schemas/result.json" in names
    # and the fetched models shipped pipelines use travel when fetched; nudenet's stays out
    for fetched in ("efficientnet_lite0.onnx", "yolov8n_untrained_coco80.onnx"):
        if os.path.isfile(os.path.join(REPO, "models", fetched)):
            assert "agent/resources/models/" + fetched in names
    assert not any("nudenet" in n for n in names)
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    assert entry_points


def test_installed_agent_finds_its_data_outside_the_repo(agent_wheel, tmp_path):
    # given the wheel unpacked somewhere that is not the checkout
    site = tmp_path / "site"
    zipfile.ZipFile(str(agent_wheel)).extractall(str(site))
    code = ("from agent.config import resources; from agent.config.pipeline_spec import load_pipeline;"
            "from agent.config.profiles import list_profiles;"
            "p = load_pipeline('face-detect');"
            "print(resources.data_dir('pipelines')); print(p.models['onnxruntime']);"
            "print(len(list_profiles()))")
    # when it loads a shipped pipeline by name
    env = dict(os.environ, PYTHONPATH=str(site))
    out = subprocess.run([sys.executable, "-c", code], cwd=str(tmp_path), env=env,
                         stdout=subprocess.PIPE, universal_newlines=True, check=True).stdout
    pipelines_dir, model, profiles = out.split()
    # then the pipeline, its model and the profiles come from the installed copy
    assert pipelines_dir.startswith(str(site))
    assert model.startswith(str(site)) and os.path.isfile(model)
    assert int(profiles) == len(os.listdir(os.path.join(REPO, "device_profiles")))

