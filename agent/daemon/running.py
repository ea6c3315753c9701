"""One running pipeline as a value, the Assembler that builds it, and Current: what runs now, as
the parts that report on it (health, metrics, the MQTT status message) ask for it.

    assemble = Assembler()                       # tests pass one built from faulty parts
    running = assemble(config, overrides, plan, outlets)
    running.start(); ...; hung = running.stop(wait_s); running.release()

A reload builds a new RunningPipeline after the old one stopped (a camera or an accelerator is
seldom free for two), and falls back to the old one's config and plan when the new one does not
start: the old value keeps both."""

import logging
import threading
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Callable, Optional, Tuple

from ..board.sensors import SystemSensors
from ..config.agent_config import AgentConfig
from ..outputs.health import STARTING
from ..outputs.reporter import ResultReporter
from ..pipeline import PipelineRunner
from ..stats import PipelineStats
from ..types import Backend, BackendInfo, CameraStatus, Source
from .assemble import Overrides, Plan, build_inference, load_backend, open_source_for
from .lifecycle import close_quietly

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outlets:
    """What every pipeline feeds and is fed by, the same across reloads."""

    stats: PipelineStats
    sink: Callable                       # the results sink (outbox, or --print numbering)
    observe: object                      # PipelineRunner's observe hook (snapshot tap, ...)
    serialise: Callable[[Backend], Backend]   # shares the backend with POST /infer
    progress: Callable[[str, float, str], None]   # engine build progress
    echo: Optional[Callable[[bytes], None]] = None
    max_frames: Optional[int] = None


@dataclass(frozen=True)
class RunningPipeline:
    """A loaded backend, an open source and the runner between them, with the config, the
    command-line choices and the plan they were made from (a reload falls back to these)."""

    config: AgentConfig
    overrides: Overrides
    plan: Plan
    backend: Backend
    source: Source
    runner: PipelineRunner

    @property
    def name(self) -> str:
        return self.plan.pipeline.name

    @property
    def describe(self) -> str:
        return "%s on %s" % (self.name, self.backend.name)

    def start(self) -> None:
        self.runner.start()
        log.info("running %s from %s", self.describe, self.source.uri)

    def stop(self, wait_s: float) -> Optional[str]:
        """Stop capture and let frames in flight finish; the stage that hung, if one did."""
        self.runner.stop()
        hung = None
        if not self.runner.wait(wait_s):
            hung = self.runner.stuck_stage(0.0) or "unknown"
            log.error("pipeline did not stop within %.0f s: stage %s is hung", wait_s, hung)
        self.close_source()
        return hung

    def close_source(self) -> None:
        try:
            self.source.close()
        except Exception:  # closing a broken camera must not hide the real outcome
            log.exception("closing source %s failed", self.source.uri)

    def release(self) -> None:
        """Free the backend; only once no stage can still be inside it."""
        close_quietly(self.backend)


class Assembler:
    """Builds a RunningPipeline (not started) from a plan. Each part comes from a function that
    can be swapped: tests inject a faulty backend loader or source opener here."""

    def __init__(self, load=load_backend, build=build_inference, open_source=open_source_for):
        self._load = load
        self._build = build
        self._open_source = open_source

    def __call__(self, config: AgentConfig, overrides: Overrides, plan: Plan,
                 outlets: Outlets) -> RunningPipeline:
        backend = outlets.serialise(self._load(plan, config, outlets.progress))
        try:
            inference = self._build(plan, backend)
            source = self._open_source(plan, config)
        except Exception:
            close_quietly(backend)
            raise
        reporter = ResultReporter(config.device_id, plan.pipeline.name,
                                  plan.pipeline.model_name, backend.name, outlets.sink,
                                  config.output.policy, config.output.interval_s, outlets.echo)
        runner = PipelineRunner(source, inference, reporter, outlets.stats, outlets.max_frames,
                                observe=outlets.observe)
        return RunningPipeline(config, overrides, plan, backend, source, runner)


class Current:
    """What runs now, for the parts that report it; they ask each time, so a reload shows at
    once. The service alone sets it; reads come from any thread (one reference each)."""

    def __init__(self, config: AgentConfig) -> None:
        self.state = STARTING            # the agent's own state (health.STATES, not derived)
        self._config = config
        self._running = None             # type: Optional[RunningPipeline]  none before the first
        self._sensors = None             # type: Optional[SystemSensors]
        self._lock = threading.Lock()

    def show(self, running: RunningPipeline) -> None:
        with self._lock:
            if self._running is None or running.plan.profile != self._running.plan.profile:
                self._sensors = SystemSensors.from_profile(running.plan.profile)
            self._running, self._config = running, running.config

    # ---- what health, metrics and the status message ask ----------------------------------
    def source(self) -> Optional[Source]:
        running = self._running
        return running.source if running is not None else None

    def camera(self) -> Optional[CameraStatus]:
        source = self.source()
        return source.status() if source is not None else None

    def backend_info(self) -> Optional[BackendInfo]:
        running = self._running
        return running.backend.info if running is not None else None

    def status_fields(self) -> Tuple[str, str]:
        """(pipeline, backend) of the MQTT status message; "" before they are known."""
        running = self._running
        return (running.name, running.backend.name) if running is not None else ("", "")

    def health_interval_s(self) -> float:
        return self._config.health.interval_s

    def system(self):
        sensors = self._sensors
        return sensors.read() if sensors is not None else {}
