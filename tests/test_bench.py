"""`edgeagent bench` from the installed wheel, outside the repo: the shipped pipelines measured
per available backend, in the Ultralytics-like table and as JSON. Asserts on the shape of the
report and on sane values, never on speed."""

import json
import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def installed(agent_wheel, tmp_path_factory):
    """The wheel built from this checkout, unpacked into a folder that is not the repo."""
    site = tmp_path_factory.mktemp("bench_wheel") / "site"
    zipfile.ZipFile(str(agent_wheel)).extractall(str(site))
    return site


def edgeagent(site, cwd, *args):
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    env["PYTHONPATH"] = str(site)          # the repo is not on the path: only the wheel
    return subprocess.run([sys.executable, "-m", "agent"] + list(args), cwd=str(cwd), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)


def test_bench_runs_from_the_wheel_outside_the_repo(installed, tmp_path):
    # when: the installed agent benchmarks its shipped face detector
    done = edgeagent(installed, tmp_path, "bench", "--pipeline", "face-detect", "--frames", "8",
                     "--warmup", "2", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    # then: one row per CPU backend that runs here, every figure present and sane
    rows = {(r["backend"], r["precision"]): r for r in report["rows"]}
    assert set(rows) == {("onnxruntime", "fp32"), ("tflite", "fp32")}
    for row in rows.values():
        assert row["pipeline"] == "face-detect" and row["device"] == "cpu"
        assert row["frames"] == 8
        assert 0 < row["inference_ms"] and 0 < row["e2e_ms"]
        assert row["inference_fps"] > 0 and row["e2e_fps"] > 0
        assert row["cpu_percent_per_frame"] > 0 and row["rss_mb"] > 10
    assert any("tensorrt" in note for note in report["skipped"])
    # the progress bar went to stderr, per row
    assert "face-detect onnxruntime fp32" in done.stderr and "8/10" not in done.stdout


def test_bench_table_has_the_ultralytics_columns(installed, tmp_path):
    done = edgeagent(installed, tmp_path, "bench", "--frames", "4", "--warmup", "1",
                     "--backends", "onnxruntime")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("Benchmarks complete for face-detect on 3 pictures")
    for column in ("Model", "Device", "Precision", "Size (MB)", "Inference (ms/im)", "FPS",
                   "End-to-end (ms/im)", "CPU %/frame", "RSS (MB)"):
        assert column in lines[1]
    assert lines[2].split()[:5] == ["0", "face_detection_short_range.onnx", "cpu", "onnxruntime",
                                    "fp32"]


def test_missing_model_says_the_command_that_makes_it(installed, tmp_path):
    # given: a pipeline naming a model this install does not carry (the wheel leaves nudenet's
    # AGPL-tagged export out)
    pipeline = tmp_path / "classify.yaml"
    pipeline.write_text("name: n\nmodels: {onnxruntime: yolov8n_nudenet_320.onnx}\n"
                        "input_size: [320, 320]\ndecoder: {type: yolov8}\n")
    config = tmp_path / "config.yaml"
    config.write_text("device: {id: x}\nstate_dir: %s\n" % tmp_path)
    for args in (["bench", "--pipeline", str(pipeline)],
                 ["validate", "--config", str(config), "--pipeline", str(pipeline)]):
        done = edgeagent(installed, tmp_path, *args)
        assert done.returncode == 3, done.stderr
        (line,) = [l for l in done.stderr.splitlines() if l.strip()]
        assert "not found" in line
        assert ("pip install --no-deps nudenet==3.4.2 && python scripts/fetch_models.py "
                "--only yolov8n_nudenet_320 --out %s" % tmp_path) in line


@pytest.mark.parametrize("pipeline", ["classify-imagenet", "yolov8-coco"])
def test_shipped_pipelines_models_travel_in_the_wheel(installed, tmp_path, fetched_models,
                                                      pipeline):
    done = edgeagent(installed, tmp_path, "bench", "--pipeline", pipeline, "--frames", "2",
                     "--warmup", "0", "--backends", "onnxruntime", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["rows"]
    assert row["pipeline"] == pipeline and row["e2e_ms"] > 0


BLOCK_CV2 = """
import runpy, sys
class NoCv2:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'cv2':
            raise ImportError('No module named cv2 (opencv extra not installed)')
sys.meta_path.insert(0, NoCv2())
sys.argv = ['edgeagent'] + sys.argv[1:]
runpy.run_module('agent', run_name='__main__')
"""


@pytest.mark.parametrize("argv", [["--version"], ["inspect", "--help"], ["bench", "--help"]])
def test_commands_start_without_the_opencv_extra(argv):
    # given an install without cv2 (opencv is an extra; JetPack's system cv2 may be missing)
    # when the parser is built (it imports bench and quantize for their arguments)
    done = subprocess.run([sys.executable, "-c", BLOCK_CV2] + argv, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)
    # then the command line still works: cv2 is imported only when a command needs frames
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
