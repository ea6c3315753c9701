"""The per-board install docs (docs/install/), performed: each board's Python from pyenv, that
board's pip (and on Python 3.6 its last setuptools), dependencies from the registry, then the
installed agent runs outside the checkout. Jetson boards get TensorRT and OpenCV from JetPack
through --system-site-packages, which this machine has not: there the test proves the missing
OpenCV is one line, exit 7, naming JetPack's package. The Pi install runs a real pipeline.

Each case's id is the doc's name: docs/install/<id>.md."""

import glob
import json
import os
import shutil
import subprocess
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICES = os.path.join(REPO, "tests", "data", "devices")
# what a source checkout ships to a build: the package, its data folders, the build files
SOURCE_PARTS = ("agent", "pipelines", "device_profiles", "setup.cfg", "setup.py",
                "pyproject.toml", "README.md")
COMMITTED_MODELS = ("face_detection_short_range.onnx", "face_detection_short_range.tflite",
                    "coco80.txt", "imagenet1000.txt", "README.md")
# (doc, Python, pip and setuptools the doc installs first, extras, recorded board for detection)
BOARDS = [
    ("jetson-nano-tx2-jetpack46", "3.6", ["pip==21.3.1", "setuptools==59.6.0"], "", "jetson-nano"),
    ("jetson-xavier-jetpack5", "3.8", ["--upgrade", "pip"], "", "jetson-xavier-nx"),
    ("jetson-orin-jetpack6", "3.10", ["--upgrade", "pip"], "", "jetson-agx-orin"),
    ("raspberrypi-bookworm", "3.11", ["--upgrade", "pip"], "[tflite,opencv]", "raspberrypi-4"),
]


def python(version):
    """That board's interpreter; .ci/run makes sure pyenv has 3.6 and 3.8."""
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/%s.*/bin/python%s"
                                                % (version, version))))
    path = found[-1] if found else shutil.which("python" + version)
    assert path, "python%s not found: pyenv install %s" % (version, version)
    return path


def clean_env(**extra):
    """The environment without PYTHONPATH: the installed copy must serve, not the checkout."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def run(argv, **kwargs):
    kwargs.setdefault("env", clean_env())
    done = subprocess.run([str(a) for a in argv], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True, **kwargs)
    assert done.returncode == 0, "%s failed:\n%s" % (" ".join(map(str, argv)), done.stdout[-3000:])
    return done.stdout


@pytest.fixture(scope="module")
def source_copy(tmp_path_factory):
    """The checkout as a clean source tree (an in-tree build must not litter the repo)."""
    root = tmp_path_factory.mktemp("src") / "edgeagent"
    root.mkdir()
    for part in SOURCE_PARTS:
        src = os.path.join(REPO, part)
        if os.path.isdir(src):
            shutil.copytree(src, str(root / part),
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, str(root / part))
    (root / "models").mkdir()
    for name in COMMITTED_MODELS:
        shutil.copy2(os.path.join(REPO, "models", name), str(root / "models" / name))
    return root


def venv(version, first, where):
    """A venv whose pip (and setuptools) are what the doc installs first, one step each."""
    run([python(version), "-m", "venv", where])
    interpreter = os.path.join(str(where), "bin", "python")
    steps = [first] if first[0] == "--upgrade" else [[requirement] for requirement in first]
    for step in steps:
        run([interpreter, "-m", "pip", "install", "-q"] + step)
    return interpreter


def installed(interpreter):
    out = run([interpreter, "-m", "pip", "list", "--format=json"])
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def major_minor(version):
    return tuple(int(x) for x in version.split(".")[:2])


def agent(interpreter, args, cwd, board):
    return subprocess.run([os.path.join(os.path.dirname(interpreter), "edgeagent")] + args,
                          cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300,
                          env=clean_env(EDGEAGENT_ROOT=os.path.join(DEVICES, board)))


def assert_runs_outside_the_checkout(interpreter, tmp_path, board):
    version = agent(interpreter, ["--version"], tmp_path, board)
    assert version.stdout.strip() == "edgeagent 0.1.0", version.stderr
    code = ("from agent.config import resources; import os; d = resources.data_dir('pipelines');"
            "print(d); print(os.path.isfile(os.path.join(d, 'face-detect.yaml')))")
    data_dir, found = run([interpreter, "-c", code], cwd=str(tmp_path)).split()
    assert data_dir.startswith(os.path.dirname(os.path.dirname(interpreter))) and found == "True"


def assert_missing_opencv_is_one_line(interpreter, tmp_path, board):
    done = agent(interpreter, ["run", "--no-mqtt", "--source", "synthetic://", "--max-frames", "1"],
                 tmp_path, board)
    assert done.returncode == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("edgeagent run: missing dependency: OpenCV (cv2) does not import")
    assert "sudo apt-get install python3-opencv" in lines[0]     # JetPack's, not pip's


@pytest.mark.parametrize("doc,version,first,extras,board", BOARDS, ids=[b[0] for b in BOARDS])
def test_install_doc_performed(source_copy, tmp_path, doc, version, first, extras, board):
    assert os.path.isfile(os.path.join(REPO, "docs", "install", doc + ".md"))
    # given the board's Python with the pip (and setuptools) its doc installs first
    interpreter = venv(version, first, tmp_path / "venv")
    # when the agent is installed from source, dependencies from the registry
    run([interpreter, "-m", "pip", "install", "-q", str(source_copy) + extras], cwd=str(tmp_path))
    versions = installed(interpreter)
    # then every dependency resolved to a release that runs on that Python
    if version == "3.6":
        assert (1, 6) <= major_minor(versions["paho-mqtt"]) < (2, 0)
        assert major_minor(versions["typing-extensions"]) <= (4, 1)
        assert "dataclasses" in versions and major_minor(versions["numpy"]) < (1, 20)
        assert major_minor(versions["pyyaml"]) <= (6, 0)
    assert major_minor(versions["paho-mqtt"]) >= (1, 6) and "numpy" in versions
    # and the installed agent runs outside the checkout
    assert_runs_outside_the_checkout(interpreter, tmp_path, board)
    if board.startswith("jetson"):
        assert "opencv-python-headless" not in versions     # JetPack's cv2 must win there
        assert_missing_opencv_is_one_line(interpreter, tmp_path, board)
        return
    # a Pi: the shipped face detector on TFLite (ai-edge-litert) with pip's OpenCV finds the
    # astronaut's face, the result on stdout
    import cv2
    import skimage.data
    frames = tmp_path / "frames"
    frames.mkdir()
    cv2.imwrite(str(frames / "astronaut.jpg"), skimage.data.astronaut()[:, :, ::-1])
    done = agent(interpreter, ["run", "--no-mqtt", "--print", "--backend", "tflite",
                               "--pipeline", "face-detect", "--source", "images://" + str(frames)],
                 tmp_path, board)
    assert done.returncode == 0, done.stderr[-2000:]
    payloads = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    assert len(payloads) == 1 and payloads[0]["backend"] == "tflite", done.stdout
    assert len(payloads[0]["detections"]) == 1, payloads[0]


def test_wheel_built_and_installed_on_python36(source_copy, tmp_path):
    # given a wheel built by Python 3.6's own pip (build isolation: setuptools 59.6 from the
    # registry, the newest that runs there)
    interpreter = venv("3.6", ["pip==21.3.1", "setuptools==59.6.0"], tmp_path / "venv")
    run([interpreter, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(source_copy)], cwd=str(tmp_path))
    (wheel_path,) = (tmp_path / "dist").glob("edgeagent-*.whl")
    # carrying the data folders mapped into agent/resources/
    names = set(zipfile.ZipFile(str(wheel_path)).namelist())
    assert "agent/resources/pipelines/face-detect.yaml" in names
    assert "agent/resources/models/face_detection_short_range.onnx" in names
    # when it is installed with its dependencies, then it runs like the source install
    run([interpreter, "-m", "pip", "install", "-q", str(wheel_path)], cwd=str(tmp_path))
    assert major_minor(installed(interpreter)["paho-mqtt"]) < (2, 0)
    assert_runs_outside_the_checkout(interpreter, tmp_path, "jetson-nano")
    assert_missing_opencv_is_one_line(interpreter, tmp_path, "jetson-nano")
