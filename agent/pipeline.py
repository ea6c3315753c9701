"""Capture, inference and output on their own threads, joined by bounded queues.

Live sources hand over through a one-frame slot: a newer frame replaces an unprocessed one
(counted as dropped), so inference never works on stale pictures. Files and folders go through a
small blocking queue, so every frame is processed. A crash in any thread is logged once with its
traceback and stops the whole pipeline; the service turns it into a non-zero exit.

Results travel to the output thread without their frame's pixels: only the snapshot tap (the
`observe` hook) keeps the newest frame, so a lagging output never holds a queue of frames.

Each thread notes when it started its current blocking step (a read, an inference, an emit), so
the service can tell a pipeline that waits for frames from one that hangs (stuck_stage()).
"""

import ctypes
import ctypes.util
import dataclasses  # novm: the dataclasses backport serves 3.6
import logging
import queue
import threading
import time
from typing import Callable, Dict, Optional

import numpy as np

from .errors import EdgeAgentError
from .inference import Inference, Inferred
from .stats import PipelineStats
from .types import CAMERA_STOPPED, Frame, FrameResult, Source

# Why a run ended (PipelineRunner.end_reason)
STOPPED, MAX_FRAMES, SOURCE_ENDED = "stopped", "max_frames", "source_ended"
END_REASONS = (STOPPED, MAX_FRAMES, SOURCE_ENDED)

log = logging.getLogger(__name__)

_END = object()       # end of stream marker, travels behind the last frame
_POLL_S = 0.2
RESULTS_QUEUE = 4     # inferred frames waiting for decode/output: smooths jitter, bounds memory


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8


def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")


def limit_malloc_arenas() -> None:
    """glibc gives threads their own malloc arenas (up to 8 per core); every reload starts new
    pipeline threads, and freed model and frame memory scattered over many arenas is never
    reused: RSS climbed with each reload. Two arenas keep it flat (bench_memory.py). Called at
    import, before the agent starts its threads; a no-op off glibc."""
    try:
        _libc().mallopt(_M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        log.debug("mallopt not available here")


def release_freed_memory() -> None:
    """glibc keeps freed memory (an old model's arena, old frames) mapped unless asked;
    malloc_trim(0) returns it to the system. A no-op off glibc."""
    try:
        _libc().malloc_trim(0)
    except (OSError, AttributeError):
        log.debug("malloc_trim not available here")


limit_malloc_arenas()


class LatestSlot:
    """A one-item hand-over where put() replaces what the consumer has not taken yet."""

    def __init__(self, on_replace: Callable[[], None]) -> None:
        self._cond = threading.Condition()
        self._item = None
        self._full = False
        self._on_replace = on_replace

    def put(self, item, timeout: Optional[float] = None) -> None:
        with self._cond:
            if self._full and self._item is not _END:
                self._on_replace()
            if not (self._full and self._item is _END):
                self._item, self._full = item, True
            self._cond.notify()

    def get(self, timeout: float):
        with self._cond:
            if not self._full:
                self._cond.wait(timeout)
            if not self._full:
                raise queue.Empty
            item, self._item, self._full = self._item, None, False
            return item


class PipelineRunner:
    """Runs one source through one Inference into `emit` until the source ends or stop()."""

    def __init__(self, source: Source, inference: Inference, emit: Callable[[FrameResult], None],
                 stats: PipelineStats, max_frames: Optional[int] = None,
                 observe: Optional[Callable[[Frame, FrameResult], None]] = None,
                 start_thread: Callable[[threading.Thread], None] = threading.Thread.start
                 ) -> None:
        # inference: an agent.inference.Inference, or anything with its prepare(frame),
        # infer(prepared) and finish(inferred) -> (frame, result) (tests' recording fakes)
        # start_thread: starts each stage's thread; a test holds one back to order the stages
        self.source = source
        self.inference = inference
        self._start_thread = start_thread
        # files: preprocess beside capture (the ring in Inference covers the bounded queue);
        # live: a replaced frame would free its tensor out of order, so preprocess on inference
        self._prepare_in_capture = not source.live
        self._emit = emit
        # observe: a SnapshotTap (frame_seen + record) or a plain (frame, result) callable
        self._seen = getattr(observe, "frame_seen", None)
        self._observe = getattr(observe, "record", observe)
        self.stats = stats
        self._max_frames = max_frames
        self._stop = threading.Event()
        self._done = threading.Event()
        self._finished = 0
        self._finished_lock = threading.Lock()
        self.error = None              # type: Optional[BaseException]
        self.end_reason = None         # type: Optional[str]  one of END_REASONS
        self._frames = LatestSlot(stats.count_dropped) if source.live else queue.Queue(maxsize=2)
        self._results = queue.Queue(maxsize=RESULTS_QUEUE)
        self._busy_since = {}          # type: Dict[str, float]   stage -> monotonic start
        self._threads = [threading.Thread(target=self._guard, args=(fn,), name=name, daemon=True)
                         for name, fn in (("capture", self._capture), ("inference", self._infer),
                                          ("output", self._output))]

    def start(self) -> None:
        release_freed_memory()    # what a previous pipeline (a reload) freed goes back to the OS
        for thread in self._threads:
            self._start_thread(thread)

    def stop(self) -> None:
        """Stop capturing; frames already captured are finished and emitted."""
        self._stop.set()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """True once every thread has finished (end of source, stop() or a crash)."""
        return self._done.wait(timeout)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def stuck_stage(self, limit_s: float, now: Optional[float] = None) -> Optional[str]:
        """The stage ("capture", "inference", "output") busy with one step for longer than
        limit_s, else None. Waiting for work is not busy: only reads, inference and emits count."""
        now = time.monotonic() if now is None else now
        for stage, since in list(self._busy_since.items()):
            if now - since > limit_s:
                return stage
        return None

    def _step(self, stage: str, call: Callable, *args):
        self._busy_since[stage] = time.monotonic()
        try:
            return call(*args)
        finally:
            self._busy_since.pop(stage, None)

    # ---- threads --------------------------------------------------------------------
    def _guard(self, body: Callable[[], None]) -> None:
        try:
            body()
        except EdgeAgentError as error:   # bad input met at run time: one clear line, no traceback
            if self.error is None:
                self.error = error
                log.debug("pipeline thread %s stopped: %s", threading.current_thread().name, error)
            self._stop.set()
        except Exception as error:  # any crash ends the pipeline loudly, never a dead thread
            if self.error is None:
                self.error = error
                log.exception("pipeline thread %s crashed; stopping",
                              threading.current_thread().name)
            self._stop.set()
        finally:
            # done when the last of the three has finished: counted, because a thread not yet
            # started is not alive either (a short file could end before output even began)
            with self._finished_lock:
                self._finished += 1
                last = self._finished == len(self._threads)
            if last:
                self._done.set()

    def _capture(self) -> None:
        read = 0
        try:
            while not self._stop.is_set():
                if self._max_frames is not None and read >= self._max_frames:
                    self.end_reason = MAX_FRAMES
                    break
                frame = self._step("capture", self.source.read)
                if frame is None:
                    if self.source.live and self.source.status().state != CAMERA_STOPPED:
                        continue          # live: nothing new yet, or the camera is being reopened
                    log.info("source %s ended after %d frames", self.source.uri, read)
                    self.end_reason = SOURCE_ENDED
                    break
                read += 1
                self.stats.count_captured()
                if self._prepare_in_capture:
                    frame = self._step("capture", self.inference.prepare, frame)
                self._put(self._frames, frame)
            else:
                self.end_reason = STOPPED
        finally:
            self._put(self._frames, _END)

    def _infer(self) -> None:
        while True:
            item = self._get(self._frames)
            if item is _END:
                break
            if not self._prepare_in_capture:
                item = self.inference.prepare(item)
            inferred = self._step("inference", self.inference.infer, item)
            self._put(self._results, self._without_pixels(inferred))
        self._put(self._results, _END)

    def _without_pixels(self, inferred):
        """Hand the frame to the tap; the results queue gets a pixel-less copy of it."""
        if not isinstance(inferred, Inferred):
            return inferred       # a test's fake inference: no Prepared frame to strip
        frame = inferred.prepared.frame
        if self._seen is not None:
            self._seen(frame)
        bare = dataclasses.replace(frame, image=np.empty((frame.height, frame.width, 0), np.uint8))
        return inferred._replace(prepared=inferred.prepared._replace(frame=bare))

    def _output(self) -> None:
        while True:
            inferred = self._get(self._results)
            if inferred is _END:
                return
            self._step("output", self._deliver, inferred)

    def _deliver(self, inferred) -> None:
        frame, result = self.inference.finish(inferred)
        self.stats.count_processed(result.timing_ms)
        if self._observe is not None:
            self._observe(frame, result)
        self._emit(result)

    def _put(self, target, item) -> None:
        """Blocking put; gives up only when another thread has crashed."""
        while self.error is None:
            try:
                target.put(item, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def _get(self, source_queue):
        while self.error is None:
            try:
                return source_queue.get(timeout=_POLL_S)
            except queue.Empty:
                continue
        return _END
