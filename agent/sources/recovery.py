"""Camera recovery: keep a live source delivering frames through unplugs, reboots and stalls.

RecoveringSource reads the wrapped source on its own thread. When the source fails (read
raises SourceError: connection dropped, end of stream, device error) or stalls (no frame
for stall_timeout_s while the connection stays open), it closes it and reopens it through
open_fn with capped exponential backoff and jitter, forever, until close(). The cap is short
(2 s by default): a camera that comes back after a long outage is found again within the
cap plus one open, not after a delay that grew with the outage. The caller
never waits longer than read(timeout): read() returns None while the camera is lost.
Frame indices keep counting up across reconnects.

A source that is not live (file, image folder) is passed through frame by frame with no
drops; its end is a clean end: state becomes "stopped" and read() returns None.
"""

import logging
import threading
import time
from dataclasses import replace  # novm: the dataclasses backport serves 3.6
from typing import Callable, Optional

from ..backoff import Backoff
from ..errors import SourceError
from ..types import CAMERA_LOST, CAMERA_RUNNING, CAMERA_STOPPED, CameraStatus, Frame, Source

log = logging.getLogger(__name__)

# the old names of the camera states (agent.types is their home)
RUNNING, STOPPED = CAMERA_RUNNING, CAMERA_STOPPED

_LOST, _ENDED = "lost", "ended"
BACKOFF_INITIAL_S = 0.2      # first retry after a loss
BACKOFF_MAX_S = 2.0          # retries never wait longer (camera.reconnect_max_s)


class RecoveringSource:
    """A Source that heals itself. state: "running" | "camera_lost" | "stopped".

    Counters: reconnects (reopens that delivered a frame again), stalls (no-frame timeouts),
    errors (failures reported by the source), open_failures (reopen attempts that failed),
    dropped (stale frames skipped, here and in the wrapped sources).
    The first open happens in the constructor; if it fails the source starts "camera_lost"
    and keeps trying in the background.
    """

    def __init__(self, open_fn: Callable[[], Source], stall_timeout_s: float,
                 backoff_initial_s: float = BACKOFF_INITIAL_S,
                 backoff_max_s: float = BACKOFF_MAX_S,
                 jitter: float = 0.2, clock: Callable[[], float] = time.monotonic,
                 sleep: Optional[Callable[[float], object]] = None,
                 read_timeout_s: float = 0.5, poll_s: float = 0.1, uri: str = "") -> None:
        if stall_timeout_s <= 0:
            raise ValueError("stall_timeout_s must be > 0, got %s" % stall_timeout_s)
        self.uri = uri
        self.live = True                     # until the opened source says otherwise
        self.stall_timeout_s = stall_timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnects = 0
        self.stalls = 0
        self.errors = 0
        self.open_failures = 0
        self.last_error = None               # type: Optional[str]
        self._open_fn = open_fn
        self._backoff = Backoff(backoff_initial_s, backoff_max_s, jitter)
        self._clock = clock
        self._stop = threading.Event()
        self._sleep = sleep or self._stop.wait
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._slot = None                    # type: Optional[Frame]
        self._final_error = None             # type: Optional[SourceError]
        self._next_index = 0
        self._own_dropped = 0
        self._closed_dropped = 0
        self._inner = None                   # type: Optional[Source]
        self._lost_at = None                 # type: Optional[float]
        first = self._try_open()
        self._state = CAMERA_RUNNING if first is not None else CAMERA_LOST
        if first is None:
            self._lost_at = clock()
        self._thread = threading.Thread(target=self._run, args=(first,),
                                        name="source-recovery", daemon=True)
        self._thread.start()

    @property
    def state(self) -> str:
        return self._state

    @property
    def dropped(self) -> int:
        inner = self._inner
        return self._own_dropped + self._closed_dropped + int(getattr(inner, "dropped", 0))

    def status(self) -> CameraStatus:
        return CameraStatus(self._state, self.reconnects, self.stalls, self.dropped)

    def read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The newest frame; None while the camera is lost, after the end, or after close().

        Live: waits at most `timeout` (default read_timeout_s). Not live: waits for the next
        frame. A not-live source that fails raises its SourceError here, once."""
        wait_s = (self.read_timeout_s if timeout is None else timeout) if self.live else None
        with self._cond:
            self._cond.wait_for(self._has_news, wait_s)
            frame, self._slot = self._slot, None
            self._cond.notify_all()          # a waiting not-live producer may go on
            error = None
            if frame is None:                # frames read before a failure come first
                error, self._final_error = self._final_error, None
        if error is not None:
            raise error
        return frame

    def close(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not threading.current_thread():
            # an open in progress may take its open timeout; the daemon thread closes what it
            # opened when that returns, so a stop is not held up by a dead camera
            self._thread.join(1.0)
        self._state = CAMERA_STOPPED

    def _has_news(self) -> bool:
        return (self._slot is not None or self._state == CAMERA_STOPPED or self._stop.is_set()
                or self._final_error is not None)

    def _run(self, source: Optional[Source]) -> None:
        try:
            reopened = False
            while not self._stop.is_set():
                if source is None:
                    source, reopened = self._reopen(), True
                    continue
                outcome = self._pump(source, reopened)
                self._close_inner(source)
                source = None
                if outcome == _ENDED:
                    break
        finally:
            if source is not None:
                self._close_inner(source)
            with self._cond:
                self._state = CAMERA_STOPPED
                self._cond.notify_all()

    def _reopen(self) -> Optional[Source]:
        delay = self._backoff.next_delay()
        log.debug("%s: reconnecting in %.2f s", self.uri, delay)
        self._sleep(delay)
        if self._stop.is_set():
            return None
        return self._try_open()

    def _try_open(self) -> Optional[Source]:
        try:
            source = self._open_fn()
        except Exception as exc:  # any open failure is retried; it is logged and counted
            self.open_failures += 1
            self.last_error = _reason(exc)
            log.info("%s: cannot open: %s", self.uri or "source", self.last_error)
            return None
        self.uri = source.uri
        self.live = bool(source.live)
        self._inner = source
        return source

    def _pump(self, source: Source, reopened: bool) -> str:
        """Move frames from source to the slot until it fails, stalls, ends or we stop."""
        base = self._next_index
        last_frame = self._clock()
        while not self._stop.is_set():
            try:
                frame = source.read(timeout=self._poll_s) if source.live else source.read()
            except SourceError as exc:
                return self._failed(source, exc)
            except Exception as exc:  # a bug in a source must not end recovery; log it loudly
                log.exception("%s: read failed unexpectedly", self.uri)
                return self._failed(source, SourceError("%s: read failed: %s: %s" % (
                    self.uri, type(exc).__name__, exc)))
            now = self._clock()
            if frame is None:
                if not source.live:
                    return _ENDED
                if now - last_frame >= self.stall_timeout_s:
                    self.stalls += 1
                    self._lost("stalled: no frame for %.1f s" % (now - last_frame))
                    return _LOST
                continue
            last_frame = now
            if reopened:
                reopened = False
                self._recovered()
            self._deliver(replace(frame, index=base + frame.index), source.live)
        return _ENDED

    def _failed(self, source: Source, exc: SourceError) -> str:
        if not source.live:          # a file cannot be resumed by reopening it
            with self._cond:
                self._final_error = exc
                self._cond.notify_all()
            return _ENDED
        self.errors += 1
        self._lost(_reason(exc))
        return _LOST

    def _lost(self, why: str) -> None:
        self.last_error = why
        self._lost_at = self._clock()
        self._state = CAMERA_LOST
        log.warning("%s: camera lost (%s); reconnecting", self.uri, why)

    def _recovered(self) -> None:
        self.reconnects += 1
        self._backoff.reset()
        self._state = CAMERA_RUNNING
        down_s = self._clock() - self._lost_at if self._lost_at is not None else 0.0
        log.info("%s: camera back after %.1f s (reconnect %d)", self.uri, down_s, self.reconnects)

    def _deliver(self, frame: Frame, live: bool) -> None:
        with self._cond:
            if not live:             # files: hand over every frame, wait for the reader
                self._cond.wait_for(lambda: self._slot is None or self._stop.is_set())
            elif self._slot is not None:
                self._own_dropped += 1
            self._slot = frame
            self._next_index = frame.index + 1
            self._cond.notify_all()

    def _close_inner(self, source: Source) -> None:
        self._inner = None            # first, so `dropped` never counts this source twice
        self._closed_dropped += int(getattr(source, "dropped", 0))
        try:
            source.close()
        except Exception as exc:  # a dead device may fail to close; it is gone anyway
            log.debug("%s: close failed: %s", self.uri, exc)


def _reason(exc: Exception) -> str:
    """'source error: rtsp://cam: connection lost' -> 'connection lost' (the URI is logged
    next to it already)."""
    text = str(exc.args[0]) if isinstance(exc, SourceError) and exc.args else str(exc)
    if "://" in text.split(" ", 1)[0] and ": " in text:
        return text.split(": ", 1)[1]
    return text
