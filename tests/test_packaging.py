"""The wheel carries the shipped data: an installed agent finds its pipelines, profiles and
committed models outside the repo."""

import os
import subprocess
import sys
import zipfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), REPO], check=True, cwd=str(out))
    (path,) = out.glob("edgeagent-*.whl")
    return path


def test_wheel_carries_pipelines_profiles_and_committed_models_only(wheel):
    # given the wheel built from this checkout
    names = set(zipfile.ZipFile(str(wheel)).namelist())
    # then every shipped pipeline and profile is inside, with the committed models
    for kind in ("pipelines", "device_profiles"):
        for name in os.listdir(os.path.join(REPO, kind)):
            assert "agent/resources/%s/%s" % (kind, name) in names
    assert "agent/resources/models/face_detection_short_range.onnx" in names
    assert "agent/resources/models/face_detection_short_range.tflite" in names
    assert "agent/schemas/result.json" in names
    # and the models fetched at build time stay out (size, licence)
    assert not any("nudenet" in n or "efficientnet" in n for n in names)
    entry_points = [n for n in names if n.endswith("entry_points.txt")]
    assert entry_points


def test_installed_agent_finds_its_data_outside_the_repo(wheel, tmp_path):
    # given the wheel unpacked somewhere that is not the checkout
    site = tmp_path / "site"
    zipfile.ZipFile(str(wheel)).extractall(str(site))
    code = ("from agent import resources; from agent.pipeline_spec import load_pipeline;"
            "from agent.profiles import list_profiles;"
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


# ---- Python 3.6 (JetPack 4.6): pip 21.3.1, setuptools 59.6, dependencies from the registry ----

PY36_PIP, PY36_SETUPTOOLS = "pip==21.3.1", "setuptools==59.6.0"
# what a source checkout ships to a build: the package, its data folders, the build files
SOURCE_PARTS = ("agent", "pipelines", "device_profiles", "setup.cfg", "setup.py",
                "pyproject.toml", "README.md")
COMMITTED_MODELS = ("face_detection_short_range.onnx", "face_detection_short_range.tflite",
                    "coco80.txt", "imagenet1000.txt", "README.md")


def python36() -> str:
    """JetPack 4.6's interpreter; .ci/run makes sure it exists (pyenv 3.6.15)."""
    import glob
    import shutil
    found = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.6.*/bin/python3.6")))
    path = found[-1] if found else shutil.which("python3.6")
    assert path, "python3.6 not found: pyenv install 3.6.15 (JetPack 4.6's Python)"
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
    import shutil
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


def venv36(where):
    """A Python 3.6 venv with the last pip and setuptools for 3.6, as the docs tell Nano users."""
    run([python36(), "-m", "venv", where])
    python = os.path.join(str(where), "bin", "python")
    run([python, "-m", "pip", "install", "-q", PY36_PIP])
    run([python, "-m", "pip", "install", "-q", PY36_SETUPTOOLS])
    return python


def installed(python):
    import json
    out = run([python, "-m", "pip", "list", "--format=json"])
    return {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}


def major_minor(version):
    return tuple(int(x) for x in version.split(".")[:2])


def assert_py36_install_works(python, tmp_path):
    # then every dependency resolved to a release that supports Python 3.6
    versions = installed(python)
    assert major_minor(versions["paho-mqtt"]) >= (1, 6) and major_minor(versions["paho-mqtt"]) < (2, 0)
    assert major_minor(versions["typing-extensions"]) <= (4, 1)
    assert "dataclasses" in versions
    assert major_minor(versions["numpy"]) < (1, 20)
    assert major_minor(versions["pyyaml"]) <= (6, 0)
    # and the installed agent runs, finding its shipped pipelines outside the checkout
    bin_dir = os.path.dirname(python)
    assert run([os.path.join(bin_dir, "edgeagent"), "--version"], cwd=str(tmp_path)).strip() \
        == "edgeagent 0.1.0"
    code = ("from agent import resources; import os; d = resources.data_dir('pipelines');"
            "print(d); print(os.path.isfile(os.path.join(d, 'face-detect.yaml')))")
    data_dir, found = run([python, "-c", code], cwd=str(tmp_path)).split()
    assert data_dir.startswith(os.path.dirname(bin_dir)) and found == "True"
    # and without OpenCV (no `opencv` extra, no system cv2) `run` stops with one line, exit 7
    done = subprocess.run([os.path.join(bin_dir, "edgeagent"), "run", "--no-mqtt",
                           "--source", "synthetic://", "--max-frames", "1"],
                          cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, env=clean_env(EDGEAGENT_ROOT=str(tmp_path)))
    assert done.returncode == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("edgeagent run: missing dependency: OpenCV (cv2) does not import")
    assert "pip install 'edgeagent[opencv]'" in lines[0]


def test_source_install_on_python36_with_its_last_pip_and_setuptools(source_copy, tmp_path):
    # given Python 3.6.15 with pip 21.3.1 and setuptools 59.6 (setuptools >= 61 needs 3.7)
    python = venv36(tmp_path / "venv")
    # when the checkout is installed from source, dependencies from the registry
    run([python, "-m", "pip", "install", "-q", str(source_copy)], cwd=str(tmp_path))
    assert_py36_install_works(python, tmp_path)


def test_wheel_built_and_installed_on_python36(source_copy, tmp_path):
    # given a wheel built by Python 3.6's own pip (build isolation: setuptools 59.6 from the
    # registry, the newest that runs there)
    python = venv36(tmp_path / "venv")
    run([python, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "dist"),
         str(source_copy)], cwd=str(tmp_path))
    (wheel_path,) = (tmp_path / "dist").glob("edgeagent-*.whl")
    # carrying the data folders mapped into agent/resources/
    names = set(zipfile.ZipFile(str(wheel_path)).namelist())
    assert "agent/resources/pipelines/face-detect.yaml" in names
    assert "agent/resources/models/face_detection_short_range.onnx" in names
    # when it is installed with its dependencies
    run([python, "-m", "pip", "install", "-q", str(wheel_path)], cwd=str(tmp_path))
    assert_py36_install_works(python, tmp_path)
