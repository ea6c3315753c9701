"""Reload inside one process, with the Service given a recording assembler (no subprocess, no
model): a pipeline that does not start falls back to the running one's config and plan and
results keep flowing; a config that does not load keeps the running pipeline."""

import json
import threading
import time

import numpy as np
import pytest

from agent_proc import wait_until, write_config
from pipeline_fakes import WholeFrame
from agent.config.agent_config import load_config
from agent.daemon.assemble import Overrides
from agent.daemon.running import Assembler
from agent.daemon.service import Service
from agent.errors import ModelError
from agent.sources import open_source
from agent.types import FP32, BackendInfo, Detections, FrameResult

SOURCE = "synthetic://?width=32&height=24&fps=50&live=1"


class FakeBackend:
    name = "onnxruntime"
    info = BackendInfo("onnxruntime", FP32, "cpu")

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.closed = False

    def close(self) -> None:
        self.closed = True


class RecordingAssembly:
    """The real Assembler's wiring around fake parts; pipelines named in `broken` fail to
    load. Keeps every backend it made."""

    def __init__(self, broken=()) -> None:
        self.broken = set(broken)
        self.backends = []

    def load(self, plan, config, progress=None):
        if plan.pipeline.name in self.broken:
            raise ModelError("%s: injected load failure" % plan.pipeline.name)
        self.backends.append(FakeBackend(plan.pipeline.name))
        return self.backends[-1]

    def build(self, plan, backend):
        def infer(frame):
            found = Detections(np.array([[1.0, 1.0, 5.0, 5.0]]), np.array([0.9]), np.array([0]))
            return FrameResult(frame.index, frame.width, frame.height, frame.ts,
                               {"infer": 1.0}, detections=found)
        return WholeFrame(infer)

    def open(self, plan, config):
        return open_source(SOURCE)

    def assembler(self) -> Assembler:
        return Assembler(load=self.load, build=self.build, open_source=self.open)


class Printed:
    """--print's echo: every stored result, as (monotonic time, payload)."""

    def __init__(self) -> None:
        self.lines = []

    def __call__(self, data: bytes) -> None:
        self.lines.append((time.monotonic(), json.loads(data.decode())))

    def pipelines_after(self, mono: float):
        return [p["pipeline"] for t, p in list(self.lines) if t > mono]


@pytest.fixture
def running_service(tmp_path):
    """Start a Service on face-detect with the given assembly in a thread; stop it after."""
    started = []

    def start(assembly):
        path = write_config(str(tmp_path / "config.yaml"), device={"id": "inproc"},
                            pipeline="face-detect", state_dir=str(tmp_path / "state"),
                            mqtt={"enabled": False})
        printed = Printed()
        service = Service(load_config(path), Overrides(), path, echo=printed,
                          assembler=assembly.assembler())
        outcome = []
        thread = threading.Thread(target=lambda: outcome.append(service.run()), daemon=True)
        hook = getattr(threading, "excepthook", None)
        thread.start()
        started.append((service, thread, hook))
        assert wait_until(lambda: len(printed.lines) >= 5, 30)
        return service, printed, path, outcome

    yield start
    for service, thread, hook in started:
        service.request_stop("test over")
        thread.join(20)
        if hook is not None:
            threading.excepthook = hook      # the service's CrashWatch installed its own


def flows(printed: Printed, pipeline: str, after: float, count: int = 5) -> bool:
    return wait_until(lambda: printed.pipelines_after(after).count(pipeline) >= count, 30)


def test_a_reload_whose_pipeline_does_not_start_falls_back_and_results_keep_flowing(
        running_service):
    assembly = RecordingAssembly(broken={"classify-imagenet"})
    service, printed, _, outcome = running_service(assembly)
    # when a reload asks for a pipeline whose model does not load
    asked = time.monotonic()
    service.request_reload("classify-imagenet")
    # then the old pipeline is built again from its own plan, and results flow on
    assert wait_until(lambda: len(assembly.backends) == 2, 30)
    assert flows(printed, "face-detect", asked)
    assert "classify-imagenet" not in printed.pipelines_after(asked)
    assert [b.pipeline for b in assembly.backends] == ["face-detect", "face-detect"]
    assert assembly.backends[0].closed and not assembly.backends[1].closed
    assert service.overrides == Overrides() and service.running.name == "face-detect"
    assert outcome == [] and service.now.status_fields() == ("face-detect", "onnxruntime")


def test_a_reload_whose_config_does_not_load_keeps_the_pipeline_running(running_service):
    assembly = RecordingAssembly()
    service, printed, path, outcome = running_service(assembly)
    first = service.running
    # when the config file is broken and a reload is asked for
    with open(path, "a") as handle:
        handle.write("pipline: typo\n")
    asked = time.monotonic()
    service.request_reload()
    # then nothing was rebuilt: the same pipeline keeps publishing
    assert flows(printed, "face-detect", asked, count=10)
    assert service.running is first and len(assembly.backends) == 1
    assert not assembly.backends[0].closed and outcome == []


def test_stop_after_a_fallback_exits_0_and_frees_the_backend(running_service):
    assembly = RecordingAssembly(broken={"classify-imagenet"})
    service, printed, _, outcome = running_service(assembly)
    service.request_reload("classify-imagenet")
    assert wait_until(lambda: len(assembly.backends) == 2, 30)
    service.request_stop("test")
    assert wait_until(lambda: outcome, 20)
    assert outcome == [0] and all(b.closed for b in assembly.backends)


def test_a_stop_asked_while_loading_starts_nothing_and_exits_cleanly(tmp_path):
    # given the signals the CLI installs first, and a stop (Ctrl-C, SIGTERM) while loading
    from agent.daemon.lifecycle import Signals
    signals = Signals()
    signals.request_stop("SIGINT")
    path = write_config(str(tmp_path / "config.yaml"), device={"id": "inproc"},
                        pipeline="face-detect", state_dir=str(tmp_path / "state"),
                        mqtt={"enabled": False})
    assembly = RecordingAssembly()
    hook = getattr(threading, "excepthook", None)
    # when the service runs with them
    code = Service(load_config(path), Overrides(), path, echo=Printed(),
                   assembler=assembly.assembler(), signals=signals).run()
    if hook is not None:
        threading.excepthook = hook      # the service's CrashWatch installed its own
    # then no backend was loaded and the exit is a clean stop's
    assert (code, assembly.backends) == (0, [])
