"""The composition root: the only place that knows every part. Runs until the source ends, a
signal stops it, or a thread crashes; SIGHUP reloads config and pipeline without losing results.

Exit codes: 0 clean stop or end of source; EdgeAgentError.exit_code for bad input; 70 when a
pipeline thread crashed (systemd's Restart=on-failure brings the agent back)."""

import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

from . import __version__
from .assemble import (Overrides, Plan, build_inference, load_backend, make_plan,
                       open_source_for)
from .config import AgentConfig, load_config
from .errors import OutputError
from .health import HealthMonitor
from .outputs import Outputs
from .pipeline import PipelineRunner
from .reporter import ResultReporter
from .sdnotify import Notifier, watchdog_interval_s
from .sensors import SystemSensors
from .stats import PipelineStats

log = logging.getLogger(__name__)

EXIT_CRASH = 70
_TICK_S = 0.2


class Service:
    def __init__(self, config: AgentConfig, overrides: Overrides, config_path: Optional[str],
                 max_frames: Optional[int] = None, echo: Optional[Callable[[bytes], None]] = None,
                 notifier: Optional[Notifier] = None) -> None:
        self.config = config
        self.overrides = overrides
        self._config_path = config_path
        self._max_frames = max_frames
        self._echo = echo
        self._notifier = notifier or Notifier()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self.stats = PipelineStats()
        self.outputs = None       # type: Optional[Outputs]
        self.health = None        # type: Optional[HealthMonitor]
        self.plan = None          # type: Optional[Plan]
        self.runner = None        # type: Optional[PipelineRunner]
        self._ready_sent = False

    # ---- signals ----------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("SIGTERM"))
        signal.signal(signal.SIGINT, lambda *_: self.request_stop("SIGINT"))
        signal.signal(signal.SIGHUP, lambda *_: self._reload.set())

    def request_stop(self, why: str) -> None:
        log.info("stop requested (%s)", why)
        self._stop.set()

    # ---- run --------------------------------------------------------------------------
    def run(self) -> int:
        self.plan = make_plan(self.config, self.overrides)
        log.info("edgeagent %s on %s: profile %s (%s), pipeline %s, source %s", __version__,
                 self.plan.device.model, self.plan.profile.name, self.plan.profile_reason,
                 self.plan.pipeline.name, self.plan.source_uri)
        self._prepare_state_dir()
        self.outputs = Outputs.start(self.config, self._status_fields)
        try:
            return self._run_pipelines()
        finally:
            self._shutdown()

    def _run_pipelines(self) -> int:
        while True:
            self._start_pipeline()
            code = self._supervise()
            if code is not None:
                return code
            self._reload_config()

    def _start_pipeline(self) -> None:
        self._notifier.status("loading backend for %s" % self.plan.pipeline.name)
        backend = load_backend(self.plan, self.config, self._engine_progress)
        inference = build_inference(self.plan, backend)
        source = open_source_for(self.plan, self.config)
        reporter = ResultReporter(self.config.device_id, self.plan.pipeline.name,
                                  self.plan.pipeline.model_name, backend.name,
                                  self.outputs.result_sink, self.config.output.policy,
                                  self.config.output.interval_s, self._echo)
        self.outputs.backend = backend.name
        self.outputs.announce("online")
        self._start_health(backend)
        self.health.source = source
        self.runner = PipelineRunner(source, inference, reporter, self.stats, self._max_frames)
        self.runner.start()
        self.health.state = "running"
        log.info("running %s on %s from %s", self.plan.pipeline.name, backend.name, source.uri)

    def _start_health(self, backend) -> None:
        info = {"name": backend.name, "precision": getattr(backend, "precision", None),
                "device": getattr(backend, "device", "cpu")}
        if self.health is not None:
            self.health.backend_info = info
            return
        self.health = HealthMonitor(self.config.device_id, self.config.health.interval_s,
                                    self.stats, SystemSensors.from_profile(self.plan.profile),
                                    self.outputs.send_health, self.outputs.stats, info)
        self.health.start()

    def _supervise(self) -> Optional[int]:
        """Watch the running pipeline; an exit code, or None when a reload was asked for."""
        watchdog_s = watchdog_interval_s()
        last_watchdog = 0.0
        while True:
            if self.runner.wait(_TICK_S):
                self._close_source()
                if self.runner.error is not None:
                    return EXIT_CRASH
                self._notify_ready()   # a short file may end before the first tick
                return 0
            if self._stop.is_set() or self._reload.is_set():
                self._stop_runner()
                if self.runner.error is not None:
                    return EXIT_CRASH
                if self._stop.is_set():
                    return 0
                return None
            if self.stats.processed and not self._ready_sent:
                self._notify_ready()
            if watchdog_s and self._frames_flowing(watchdog_s * 2) and \
                    time.monotonic() - last_watchdog >= watchdog_s:
                self._notifier.notify("WATCHDOG=1")
                last_watchdog = time.monotonic()

    def _frames_flowing(self, within_s: float) -> bool:
        """Keep-alives only while frames make it through inference: a hung thread must lead
        to a watchdog restart. A lost camera is not a hang: recovery is running."""
        last = self.stats.last_processed_mono
        if last is not None and time.monotonic() - last < within_s:
            return True
        source = self.runner.source
        return getattr(source, "state", None) == "camera_lost"

    def _notify_ready(self) -> None:
        if not self._ready_sent:
            self._ready_sent = True
            self._notifier.notify("READY=1", "STATUS=running %s on %s" % (
                self.plan.pipeline.name, self.outputs.backend))
            log.info("ready: first frame processed")

    def _stop_runner(self) -> None:
        self.health.state = "stopping" if self._stop.is_set() else "running"
        self.runner.stop()
        if not self.runner.wait(10.0):
            log.error("pipeline did not stop within 10 s (a stage is hung)")
        self._close_source()

    def _close_source(self) -> None:
        try:
            self.runner.source.close()
        except Exception:  # closing a broken camera must not hide the real outcome
            log.exception("closing source %s failed", self.runner.source.uri)

    def _reload_config(self) -> None:
        self._reload.clear()
        self._notifier.notify("RELOADING=1", "MONOTONIC_USEC=%d" % int(time.monotonic() * 1e6))
        log.info("SIGHUP: reloading %s", self._config_path or "defaults")
        try:
            config = load_config(self._config_path)
            plan = make_plan(config, self.overrides)
        except Exception as why:  # a broken edit must not take down a running agent
            log.error("reload failed, keeping the running config: %s", why)
        else:
            if config.mqtt != self.config.mqtt or config.outbox != self.config.outbox:
                log.warning("reload: mqtt/outbox changes take effect after a restart")
            self.config, self.plan = config, plan
        self._notifier.notify("READY=1", "STATUS=reloaded: %s" % self.plan.pipeline.name)

    def _engine_progress(self, state: str, elapsed_s: float, detail: str) -> None:
        if self.health is not None:
            self.health.state = "building_engine" if state == "building_engine" else "starting"
        self._notifier.status("%s: %.0f s %s" % (state, elapsed_s, detail))

    def _status_fields(self):
        return (self.plan.pipeline.name if self.plan else "",
                self.outputs.backend if self.outputs else "")

    def _prepare_state_dir(self) -> None:
        try:
            os.makedirs(self.config.state_dir, exist_ok=True)
        except OSError as why:
            raise OutputError("state_dir %s: cannot create it (%s); set state_dir in the config "
                              "to a writable folder (systemd: StateDirectory=edgeagent)" % (
                                  self.config.state_dir, why.strerror))
        if not os.access(self.config.state_dir, os.W_OK):
            raise OutputError("state_dir %s: not writable by this user; set state_dir in the "
                              "config or fix its owner" % self.config.state_dir)

    def _shutdown(self) -> None:
        self._notifier.notify("STOPPING=1", "STATUS=stopping")
        if self.health is not None:
            self.health.state = "stopping"
            self.health.stop()
        if self.outputs is not None:
            self.outputs.stop(drain_timeout_s=5.0)
        log.info("stopped")
        sys.stdout.flush()
