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

from .. import __version__, wire
from .assemble import Overrides, Plan, make_plan
from ..config.agent_config import AgentConfig, load_config
from ..outputs.dashboards import Dashboards
from ..errors import EdgeAgentError, OutputError
from ..outputs.health import BUILDING_ENGINE, RUNNING, STARTING, STOPPING, HealthMonitor
from .lifecycle import (EXIT_CRASH, CrashWatch, KeepAlive, Lifecycle, Signals, StatusLine,
                        dump_stacks_on_fatal_signals, prepare_state_dir,
                        warn_restart_only, with_state_directory)
from ..outputs.hub import Outputs
from ..outputs.snapshot import SnapshotTap
from .running import Assembler, Current, Outlets, RunningPipeline
from .sdnotify import Notifier, watchdog_interval_s
from ..stats import PipelineStats
from ..pipeline import SOURCE_ENDED
from ..types import CAMERA_LOST

log = logging.getLogger(__name__)

_TICK_S = 0.2
STOP_WAIT_S = 6.0         # frames in flight get this long to finish at stop or reload
DRAIN_S = 5.0             # the outbox gets this long to reach the broker at stop ...
STOP_BUDGET_S = 9.5       # ... within this from the stop request, a hung stage included


class Service:
    def __init__(self, config: AgentConfig, overrides: Overrides, config_path: Optional[str],
                 max_frames: Optional[int] = None, echo: Optional[Callable[[bytes], None]] = None,
                 notifier: Optional[Notifier] = None,
                 assembler: Optional[Callable[..., RunningPipeline]] = None,
                 signals: Optional[Signals] = None) -> None:
        self.config = with_state_directory(config)
        self.overrides = overrides
        self._config_path = config_path
        self._max_frames = max_frames
        self._echo = echo
        self._assemble = assembler or Assembler()
        self._notifier = notifier or Notifier()
        self.signals = signals or Signals()    # the CLI's, installed before anything loads
        self.crashes = CrashWatch()
        self.keepalive = KeepAlive(self._notifier, watchdog_interval_s())
        self.systemd = Lifecycle(self._notifier, self.keepalive)
        self.status_line = StatusLine(self._notifier)
        self.stats = PipelineStats()
        self.now = Current(self.config)
        self.tap = SnapshotTap()   # kept across reloads: a snapshot right after one still works
        self.outputs = Outputs(self.config, self.now)
        self.dashboards = Dashboards(self.config, self.outputs, self.stats, self.tap.latest,
                                     self.now)
        self.health = HealthMonitor(self.config.device_id, self.stats, self.now,
                                    self.outputs.send_health, self.outputs.stats)
        self.running = None       # type: Optional[RunningPipeline]  none before the first starts
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
            plan = make_plan(self.config, self.overrides)
            log.info("edgeagent %s on %s: profile %s (%s), pipeline %s, source %s", __version__,
                     plan.device.model, plan.profile.name, plan.profile_reason,
                     plan.pipeline.name, plan.source_uri)
            prepare_state_dir(self.config.state_dir)
            self.outputs.start()
            if self.config.commands_enabled:
                self.outputs.enable_commands(self.tap.latest, self.request_reload)
            self.dashboards.start()
            if self.signals.stop.is_set():   # Ctrl-C or SIGTERM while loading: start nothing
                log.info("stopped before the pipeline started (%s)", self.signals.reason)
                code = 0
            else:
                running = self._start(self.config, self.overrides, plan)
                self.health.start()
                code = self._run_pipelines(running)
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

    def _run_pipelines(self, running: RunningPipeline) -> int:
        while True:
            code = self._supervise(running)
            if code is not None:
                return code
            code = self._reload(running)
            if code is not None:
                return code
            running = self.running

    def _start(self, config: AgentConfig, overrides: Overrides, plan: Plan) -> RunningPipeline:
        """Assemble and start a pipeline, then show it to health, metrics and MQTT."""
        self._notifier.status("loading backend for %s" % plan.pipeline.name)
        outlets = Outlets(self.stats, self.dashboards.sink(self.outputs.result_sink),
                          self.dashboards.observer(self.tap), self.dashboards.serialise,
                          self._engine_progress, self._echo, self._max_frames)
        running = self._assemble(config, overrides, plan, outlets)
        self.running = running
        self.now.show(running)
        self.outputs.announce(wire.ONLINE)
        running.start()
        self.dashboards.pipeline_started(plan, running.backend, self.health)
        self.now.state = RUNNING
        return running

    # ---- supervision ------------------------------------------------------------------
    def _supervise(self, running: RunningPipeline) -> Optional[int]:
        """Watch the running pipeline; an exit code, or None when a reload was asked for."""
        runner = running.runner
        while True:
            finished = runner.wait(_TICK_S)
            if self.crashes.crashed is not None:
                self._stop_runner(running)
                return EXIT_CRASH
            if finished:
                return self._source_finished(running)
            if self.signals.stop.is_set():
                self._stop_began = time.monotonic()
                self.systemd.send_stopping()
                stopped = self._stop_runner(running)
                return 0 if stopped and runner.error is None else EXIT_CRASH
            if self.signals.reload.is_set():
                return None
            self._tick(running)

    def _source_finished(self, running: RunningPipeline) -> int:
        running.close_source()
        runner = running.runner
        if isinstance(runner.error, EdgeAgentError):
            raise runner.error       # the CLI prints it as one line with its exit code
        if runner.error is not None:
            return EXIT_CRASH
        if runner.end_reason == SOURCE_ENDED and running.source.live:
            log.error("live source %s ended although nobody closed it", running.source.uri)
            return EXIT_CRASH
        self._ready(running)          # a short file may end before the first tick
        return 0

    def _tick(self, running: RunningPipeline) -> None:
        camera = running.source.status().state
        if not self.systemd.ready and (self.stats.processed or camera == CAMERA_LOST):
            self._ready(running)
        if self.systemd.ready:
            self.keepalive.tick(*self._progress(running, camera))
            self.status_line.update("running " + running.describe, self.stats.processed,
                                    camera)

    def _progress(self, running: RunningPipeline, camera: str) -> Tuple[bool, str]:
        """Progress: no stage stuck on one step, and a frame through inference within
        WatchdogSec= — or no frames because the camera is being reconnected (not a hang)."""
        limit_s = self.keepalive.timeout_s or 0.0
        stuck = running.runner.stuck_stage(limit_s)
        if stuck is not None:
            return False, "%s stage busy on one step for over %.0f s" % (stuck, limit_s)
        last = self.stats.last_processed_mono
        if (last is not None and time.monotonic() - last < limit_s) or camera == CAMERA_LOST:
            return True, ""
        return False, "no frame processed for %.0f s" % limit_s

    def _stop_runner(self, running: RunningPipeline) -> bool:
        """Stop capture, let frames in flight finish; False when a stage hung (it is waited
        for once: a second call returns False at once)."""
        if self._hung is not None:
            return False
        self._hung = running.stop(STOP_WAIT_S)
        return self._hung is None

    # ---- reload -----------------------------------------------------------------------
    def _reload(self, old: RunningPipeline) -> Optional[int]:
        """New config and pipeline; the outbox, seq and MQTT link stay. A config that does not
        load keeps the running pipeline; a pipeline that does not start falls back to the old
        one's config and plan. A stage that hangs keeps its backend: EXIT_CRASH, and systemd
        restarts the agent."""
        self.signals.reload.clear()
        self.systemd.send_reloading()
        log.info("reloading %s", self._config_path or "defaults")
        try:
            config = with_state_directory(load_config(self._config_path))
            plan = make_plan(config, self.overrides)
        except EdgeAgentError as why:
            log.error("reload failed, keeping %s running: %s", old.name, why)
            self.overrides = old.overrides
            self.systemd.send_reloaded("reload failed (%s); running %s" % (
                type(why).__name__, old.name))
            return None
        warn_restart_only(self.config, config)
        if not self._stop_runner(old):
            log.error("reload: stage %s is hung; exiting %d so that systemd restarts the agent "
                      "(its backend cannot be freed while the stage may still use it)",
                      self._hung, EXIT_CRASH)
            return EXIT_CRASH
        old.release()
        try:
            running = self._start(config, self.overrides, plan)
        except EdgeAgentError as why:
            log.error("reload: %s does not start (%s); going back to %s", plan.pipeline.name,
                      why, old.name)
            self.overrides = old.overrides
            running = self._start(old.config, old.overrides, old.plan)
        self.config = running.config
        self.systemd.send_reloaded("reloaded: running " + running.describe)
        return None

    # ---- systemd notifications ----------------------------------------------------------
    def _ready(self, running: RunningPipeline) -> None:
        if self.systemd.send_ready("running " + running.describe):
            log.info("ready: %s", "first frame processed" if self.stats.processed
                     else "waiting for the camera to come back")

    def _engine_progress(self, state: str, elapsed_s: float, detail: str) -> None:
        """From the engine builder's progress thread: proof of life for systemd."""
        self.now.state = BUILDING_ENGINE if state == BUILDING_ENGINE else STARTING
        self.systemd.working("%s: %.0f s %s" % (state, elapsed_s, detail))

    # ---- shutdown -----------------------------------------------------------------------
    def _shutdown(self, code: int, drain_s: float) -> int:
        began = self._stop_began or time.monotonic()
        self.systemd.send_stopping()
        running = self.running
        if running is not None and running.runner.running and drain_s > 0:
            self._stop_runner(running)
        self.now.state = STOPPING
        self.health.stop()
        self.dashboards.stop()
        left_s = began + STOP_BUDGET_S - time.monotonic()   # what is stored gets the rest
        self.outputs.stop(drain_timeout_s=min(drain_s, max(0.5, left_s)) if drain_s else 0.0)
        if self._hung is not None:
            log.error("backend left open: the %s stage may still be inside it (the process "
                      "exit releases it)", self._hung)
        elif running is not None:
            running.release()
        unstored = self.outputs.unstored
        if unstored and code == 0:    # never a clean exit with results lost (docs/outbox.md)
            log.error("%d results could not be stored (outbox storage failed); exiting with %d",
                      unstored, OutputError.exit_code)
            code = OutputError.exit_code
        log.info("stopped (exit %d)", code)
        sys.stdout.flush()
        return code
