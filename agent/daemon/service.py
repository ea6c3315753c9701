"""The composition root: the only place that knows every part. Runs until the source ends, a
signal stops it, or a thread crashes; SIGHUP reloads config and pipeline without losing results.

Exit codes: 0 clean stop or end of source; EdgeAgentError.exit_code for bad input; 70 when a
thread crashed or a stage hung at stop or reload (systemd's Restart=on-failure brings the agent
back). A hung stage is waited for once, and its backend is never freed under it.
systemd protocol (docs/service.md): READY=1 once the first frame went through inference (or the
camera is being reconnected), WATCHDOG=1 only while the pipeline makes progress, RELOADING=1 /
READY=1 around a reload, STOPPING=1 at stop, STATUS= lines throughout."""

import dataclasses  # novm: the dataclasses backport serves 3.6
import logging
import sys
import time
from typing import Callable, Optional, Tuple

from .. import __version__
from .assemble import (Overrides, Plan, build_inference, load_backend, make_plan,
                       open_source_for)
from ..config.agent_config import AgentConfig, load_config
from ..outputs.dashboards import Dashboards
from ..errors import EdgeAgentError, OutputError
from ..outputs.health import HealthMonitor
from .lifecycle import (EXIT_CRASH, CrashWatch, KeepAlive, Lifecycle, Signals, StatusLine,
                        close_quietly, dump_stacks_on_fatal_signals, prepare_state_dir,
                        warn_restart_only, with_state_directory)
from ..outputs.hub import Outputs
from ..outputs.snapshot import SnapshotTap
from ..pipeline import PipelineRunner
from ..outputs.reporter import ResultReporter
from .sdnotify import Notifier, watchdog_interval_s
from ..board.sensors import SystemSensors
from ..stats import PipelineStats

log = logging.getLogger(__name__)

_TICK_S = 0.2
STOP_WAIT_S = 6.0         # frames in flight get this long to finish at stop or reload
DRAIN_S = 5.0             # the outbox gets this long to reach the broker at stop ...
STOP_BUDGET_S = 9.5       # ... within this from the stop request, a hung stage included


class Service:
    def __init__(self, config: AgentConfig, overrides: Overrides, config_path: Optional[str],
                 max_frames: Optional[int] = None, echo: Optional[Callable[[bytes], None]] = None,
                 notifier: Optional[Notifier] = None) -> None:
        self.config = with_state_directory(config)
        self.overrides = overrides
        self._config_path = config_path
        self._max_frames = max_frames
        self._echo = echo
        self._notifier = notifier or Notifier()
        self.signals = Signals()
        self.crashes = CrashWatch()
        self.keepalive = KeepAlive(self._notifier, watchdog_interval_s())
        self.systemd = Lifecycle(self._notifier, self.keepalive)
        self.status_line = StatusLine(self._notifier)
        self.stats = PipelineStats()
        self.outputs = None       # type: Optional[Outputs]
        self.health = None        # type: Optional[HealthMonitor]
        self.plan = None          # type: Optional[Plan]
        self.runner = None        # type: Optional[PipelineRunner]
        self._tap = None          # type: Optional[SnapshotTap]
        self._backend = None
        self._running_overrides = overrides
        self.dashboards = None    # type: Optional[Dashboards]
        self._hung = None         # type: Optional[str]   the stage that did not stop
        self._stop_began = None   # type: Optional[float]

    def install_signal_handlers(self) -> None:
        self.signals.install()

    def request_stop(self, why: str) -> None:
        self.signals.request_stop(why)

    def request_reload(self, pipeline: Optional[str] = None) -> None:
        """What SIGHUP does, from any thread (remote commands); `pipeline` also replaces the
        pipeline (as --pipeline would) for this and later reloads."""
        if pipeline is not None:
            self.overrides = dataclasses.replace(self.overrides, pipeline=pipeline)
        self.signals.reload.set()

    # ---- run --------------------------------------------------------------------------
    def run(self) -> int:
        self.crashes.install()
        dump_stacks_on_fatal_signals()
        code, drain_s = EXIT_CRASH, DRAIN_S
        try:
            self.plan = make_plan(self.config, self.overrides)
            log.info("edgeagent %s on %s: profile %s (%s), pipeline %s, source %s", __version__,
                     self.plan.device.model, self.plan.profile.name, self.plan.profile_reason,
                     self.plan.pipeline.name, self.plan.source_uri)
            prepare_state_dir(self.config.state_dir)
            self.outputs = Outputs.start(self.config, self._status_fields)
            if self.config.commands_enabled:
                self.outputs.enable_commands(self._latest_frame, self.request_reload)
            self.dashboards = Dashboards.start(self.config, self.outputs, self.stats,
                                               self._latest_frame)
            self._start_pipeline()
            code = self._run_pipelines()
        except EdgeAgentError as error:
            code = error.exit_code
            raise
        except KeyboardInterrupt:     # Ctrl-C twice: leave now, the outbox keeps what is left
            code, drain_s = 130, 0.0
            raise
        except Exception:  # a bug in the main thread: one traceback, then a restartable exit
            log.exception("edgeagent crashed; exiting with %d", EXIT_CRASH)
        finally:
            code = self._shutdown(code, drain_s)
        return code

    def _run_pipelines(self) -> int:
        while True:
            code = self._supervise()
            if code is None:
                code = self._reload()
            if code is not None:
                return code

    def _start_pipeline(self) -> None:
        plan = self.plan
        self._notifier.status("loading backend for %s" % plan.pipeline.name)
        backend = self.dashboards.serialise(load_backend(plan, self.config, self._engine_progress))
        try:
            inference = build_inference(plan, backend)
            source = open_source_for(plan, self.config)
        except Exception:
            close_quietly(backend)
            raise
        reporter = ResultReporter(self.config.device_id, plan.pipeline.name,
                                  plan.pipeline.model_name, backend.name,
                                  self.dashboards.sink(self.outputs.result_sink),
                                  self.config.output.policy,
                                  self.config.output.interval_s, self._echo)
        self._backend = backend
        self.outputs.backend = backend.name
        self.outputs.announce("online")
        self._start_health(backend)
        self.health.source = source
        if self._tap is None:     # kept across reloads: a snapshot right after one still works
            self._tap = SnapshotTap()
        self.runner = PipelineRunner(source, inference, reporter, self.stats, self._max_frames,
                                     observe=self.dashboards.observer(self._tap))
        self.runner.start()
        self.dashboards.pipeline_started(plan, backend, source, self.health)
        self.health.state = "running"
        log.info("running %s on %s from %s", plan.pipeline.name, backend.name, source.uri)

    def _latest_frame(self):
        tap = self._tap
        return tap.latest() if tap is not None else None

    def _start_health(self, backend) -> None:
        info = {"name": backend.name, "precision": getattr(backend, "precision", None),
                "device": getattr(backend, "device", "cpu")}
        if self.health is not None:
            self.health.backend_info = info
            self.health.interval_s = self.config.health.interval_s
            return
        self.health = HealthMonitor(self.config.device_id, self.config.health.interval_s,
                                    self.stats, SystemSensors.from_profile(self.plan.profile),
                                    self.outputs.send_health, self.outputs.stats, info)
        self.health.start()

    # ---- supervision ------------------------------------------------------------------
    def _supervise(self) -> Optional[int]:
        """Watch the running pipeline; an exit code, or None when a reload was asked for."""
        while True:
            finished = self.runner.wait(_TICK_S)
            if self.crashes.crashed is not None:
                self._stop_runner()
                return EXIT_CRASH
            if finished:
                return self._source_finished()
            if self.signals.stop.is_set():
                self._stop_began = time.monotonic()
                self.systemd.send_stopping()
                return 0 if self._stop_runner() and self.runner.error is None else EXIT_CRASH
            if self.signals.reload.is_set():
                return None
            self._tick()

    def _source_finished(self) -> int:
        self._close_source()
        if isinstance(self.runner.error, EdgeAgentError):
            raise self.runner.error       # the CLI prints it as one line with its exit code
        if self.runner.error is not None:
            return EXIT_CRASH
        if self.runner.end_reason == "source_ended" and self.runner.source.live:
            log.error("live source %s ended although nobody closed it", self.runner.source.uri)
            return EXIT_CRASH
        self._ready()          # a short file may end before the first tick
        return 0

    def _tick(self) -> None:
        camera = str(getattr(self.runner.source, "state", "running"))
        if not self.systemd.ready and (self.stats.processed or camera == "camera_lost"):
            self._ready()
        if self.systemd.ready:
            self.keepalive.tick(*self._progress(camera))
            self.status_line.update("running %s on %s" % (self.plan.pipeline.name,
                                                          self.outputs.backend),
                                    self.stats.processed, camera)

    def _progress(self, camera: str) -> Tuple[bool, str]:
        """Progress: no stage stuck on one step, and a frame through inference within
        WatchdogSec= — or no frames because the camera is being reconnected (not a hang)."""
        limit_s = self.keepalive.timeout_s or 0.0
        stuck = self.runner.stuck_stage(limit_s)
        if stuck is not None:
            return False, "%s stage busy on one step for over %.0f s" % (stuck, limit_s)
        last = self.stats.last_processed_mono
        if (last is not None and time.monotonic() - last < limit_s) or camera == "camera_lost":
            return True, ""
        return False, "no frame processed for %.0f s" % limit_s

    def _stop_runner(self) -> bool:
        """Stop capture, let frames in flight finish; False when a stage hung (it is waited
        for once: a second call returns False at once)."""
        if self._hung is not None:
            return False
        self.runner.stop()
        finished = self.runner.wait(STOP_WAIT_S)
        if not finished:
            self._hung = self.runner.stuck_stage(0.0) or "unknown"
            log.error("pipeline did not stop within %.0f s: stage %s is hung", STOP_WAIT_S,
                      self._hung)
        self._close_source()
        return finished

    def _close_source(self) -> None:
        try:
            self.runner.source.close()
        except Exception:  # closing a broken camera must not hide the real outcome
            log.exception("closing source %s failed", self.runner.source.uri)

    # ---- reload -----------------------------------------------------------------------
    def _reload(self) -> Optional[int]:
        """New config and pipeline; the outbox, seq and MQTT link stay. A config that does not
        load keeps the running pipeline; a pipeline that does not start falls back to the old.
        A stage that hangs keeps its backend: EXIT_CRASH, and systemd restarts the agent."""
        self.signals.reload.clear()
        self.systemd.send_reloading()
        log.info("reloading %s", self._config_path or "defaults")
        previous = (self.config, self.plan, self._running_overrides)
        try:
            config = with_state_directory(load_config(self._config_path))
            plan = make_plan(config, self.overrides)
        except EdgeAgentError as why:
            log.error("reload failed, keeping %s running: %s", self.plan.pipeline.name, why)
            self.overrides = previous[2]
            self.systemd.send_reloaded("reload failed (%s); running %s" % (
                type(why).__name__, self.plan.pipeline.name))
            return None
        warn_restart_only(self.config, config)
        if not self._stop_runner():
            log.error("reload: stage %s is hung; exiting %d so that systemd restarts the agent "
                      "(its backend cannot be freed while the stage may still use it)",
                      self._hung, EXIT_CRASH)
            return EXIT_CRASH
        close_quietly(self._backend)
        self.config, self.plan = config, plan
        try:
            self._start_pipeline()
        except EdgeAgentError as why:
            log.error("reload: %s does not start (%s); going back to %s", plan.pipeline.name,
                      why, previous[1].pipeline.name)
            self.config, self.plan, self.overrides = previous
            self._start_pipeline()
        self._running_overrides = self.overrides
        self.systemd.send_reloaded("reloaded: running %s on %s" % (self.plan.pipeline.name,
                                                                   self.outputs.backend))
        return None

    # ---- systemd notifications ----------------------------------------------------------
    def _ready(self) -> None:
        if self.systemd.send_ready("running %s on %s" % (self.plan.pipeline.name,
                                                          self.outputs.backend)):
            log.info("ready: %s", "first frame processed" if self.stats.processed
                     else "waiting for the camera to come back")

    def _engine_progress(self, state: str, elapsed_s: float, detail: str) -> None:
        """From the engine builder's progress thread: proof of life for systemd."""
        if self.health is not None:
            self.health.state = "building_engine" if state == "building_engine" else "starting"
        self.systemd.working("%s: %.0f s %s" % (state, elapsed_s, detail))

    # ---- state and shutdown ---------------------------------------------------------------
    def _status_fields(self):
        return (self.plan.pipeline.name if self.plan else "",
                self.outputs.backend if self.outputs else "")

    def _shutdown(self, code: int, drain_s: float) -> int:
        began = self._stop_began or time.monotonic()
        self.systemd.send_stopping()
        if self.runner is not None and self.runner.running and drain_s > 0:
            self._stop_runner()
        if self.health is not None:
            self.health.state = "stopping"
            self.health.stop()
        if self.dashboards is not None:
            self.dashboards.stop()
        if self.outputs is not None:   # what is stored gets the rest of the stop budget
            left_s = began + STOP_BUDGET_S - time.monotonic()
            self.outputs.stop(drain_timeout_s=min(drain_s, max(0.5, left_s)) if drain_s else 0.0)
        if self._hung is None:
            close_quietly(self._backend)
        else:
            log.error("backend left open: the %s stage may still be inside it (the process "
                      "exit releases it)", self._hung)
        unstored = self.outputs.unstored if self.outputs is not None else 0
        if unstored and code == 0:    # never a clean exit with results lost (docs/outbox.md)
            log.error("%d results could not be stored (outbox storage failed); exiting with %d",
                      unstored, OutputError.exit_code)
            code = OutputError.exit_code
        log.info("stopped (exit %d)", code)
        sys.stdout.flush()
        return code

