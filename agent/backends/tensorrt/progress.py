"""Telling people an engine build is alive: it takes 5-30 minutes on a Nano.

A side thread logs "building TensorRT engine for X: 42 s elapsed (phase)" every LOG_EVERY_S and
calls the service's progress callback (health state ``building_engine``). Where TensorRT has
IProgressMonitor (10.x) its phase names fill in the phase; elsewhere the phase is what we know
ourselves (parsing, building: tactic timing, calibrating, writing).
"""

import logging
import threading
import time
from typing import Callable, Dict, Optional

log = logging.getLogger(__name__)

LOG_EVERY_S = 15.0
BUILDING = "building_engine"
READY = "engine_ready"
FAILED = "engine_build_failed"

ProgressCallback = Callable[[str, float, str], None]


class BuildProgress:
    """Shared, thread-safe "where is the build": the phase text and the start time."""

    def __init__(self, what: str, callback: Optional[ProgressCallback] = None,
                 every_s: float = LOG_EVERY_S) -> None:
        self._what = what
        self._callback = callback
        self._every_s = every_s
        self._lock = threading.Lock()
        self._phase = "starting"
        self._monitor_phases = {}  # type: Dict[str, str]
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = None  # type: Optional[threading.Thread]

    def __enter__(self) -> "BuildProgress":
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._report_until_stopped,
                                        name="trt-build-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if kind is None:
            self._emit(READY, "done")
        else:
            self._emit(FAILED, str(value))

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._started

    def phase(self, text: str) -> None:
        with self._lock:
            self._phase = text
        self.report()

    def detail(self) -> str:
        with self._lock:
            steps = [self._monitor_phases[k] for k in sorted(self._monitor_phases)]
            return " > ".join([self._phase] + steps)

    def report(self) -> None:
        detail = self.detail()
        log.info("building TensorRT engine for %s: %d s elapsed (%s)",
                 self._what, self.elapsed_s, detail)
        self._emit(BUILDING, detail)

    def monitor_update(self, key: str, text: Optional[str]) -> None:
        """Called from TensorRT's threads by the IProgressMonitor adapter."""
        with self._lock:
            if text is None:
                self._monitor_phases.pop(key, None)
            else:
                self._monitor_phases[key] = text

    def _report_until_stopped(self) -> None:
        while not self._stop.wait(self._every_s):
            self.report()

    def _emit(self, state: str, detail: str) -> None:
        if self._callback is None:
            return
        try:
            self._callback(state, self.elapsed_s, detail)
        except Exception:  # a broken health hook must never kill a 20-minute build
            log.exception("engine build progress callback failed")


def attach_monitor(trt, config, progress: BuildProgress):
    """Hooks an IProgressMonitor into the builder config where TensorRT has one (10.x) and
    returns it (the caller keeps it alive for the build), else None."""
    if not hasattr(trt, "IProgressMonitor") or not hasattr(config, "progress_monitor"):
        return None
    monitor = _monitor_class(trt)(progress)
    config.progress_monitor = monitor
    return monitor


def _monitor_class(trt):
    class PhaseMonitor(trt.IProgressMonitor):
        """Keeps "phase step/steps" per active phase, nested phases sorted by start order."""

        def __init__(self, progress: BuildProgress) -> None:
            trt.IProgressMonitor.__init__(self)
            self._progress = progress
            self._steps = {}  # type: Dict[str, int]
            self._order = {}  # type: Dict[str, str]
            self._count = 0

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            self._count += 1
            self._order[phase_name] = "%04d" % self._count
            self._steps[phase_name] = int(num_steps)
            self._progress.monitor_update(self._order[phase_name],
                                          "%s 0/%d" % (phase_name, num_steps))

        def step_complete(self, phase_name, step) -> bool:
            key = self._order.get(phase_name)
            if key is not None:
                self._progress.monitor_update(key, "%s %d/%d" % (
                    phase_name, step + 1, self._steps.get(phase_name, 0)))
            return True  # False would cancel the build

        def phase_finish(self, phase_name) -> None:
            key = self._order.pop(phase_name, None)
            if key is not None:
                self._progress.monitor_update(key, None)

    return PhaseMonitor
