"""The parts of running as a daemon that are not about frames: signals, thread crashes, the
systemd watchdog and the status line. The service owns one of each and polls them.

    signals = Signals().install()          # SIGTERM/SIGINT -> stop, SIGHUP -> reload
    crashes = CrashWatch().install()       # any thread dying of an exception -> exit 70
    keepalive = KeepAlive(notifier, watchdog_interval_s())
    keepalive.tick(progressing=True)       # WATCHDOG=1 at most every interval
"""

import errno
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Optional

from ..config.agent_config import DEFAULT_STATE_DIR, AgentConfig
from .sdnotify import Notifier

log = logging.getLogger(__name__)

EXIT_CRASH = 70          # EX_SOFTWARE: a bug or a hang; systemd's Restart=on-failure restarts


class Signals:
    """SIGTERM and SIGINT ask for a clean stop, SIGHUP for a reload; the main loop polls the
    flags (Python runs handlers in the main thread, between two bytecodes of the loop).
    A second SIGINT (Ctrl-C twice in a terminal) gives up waiting: KeyboardInterrupt."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.reason = ""

    def install(self) -> "Signals":
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, lambda *_: self.reload.set())
        return self

    def request_stop(self, reason: str) -> None:
        if not self.stop.is_set():
            log.info("stop requested (%s)", reason)
            self.reason = reason
        self.stop.set()

    def _on_stop(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.stop.is_set():
            raise KeyboardInterrupt
        if signum == signal.SIGINT:
            log.info("stopping; press Ctrl-C again to quit without draining")
        self.request_stop(name)


class CrashWatch:
    """Any thread that dies of an exception is logged once with its traceback and recorded, so
    the service ends with EXIT_CRASH instead of running on with a silently dead thread."""

    def __init__(self) -> None:
        self.crashed = None            # type: Optional[str]   name of the first dead thread
        self._lock = threading.Lock()

    def install(self) -> "CrashWatch":
        if hasattr(threading, "excepthook"):          # 3.8+
            threading.excepthook = self._hook  # novm: guarded by hasattr
        else:                                         # 3.6/3.7 (JetPack 4.6): wrap Thread.run
            _wrap_thread_run(self.report)
        return self

    def report(self, thread_name: str, exc_info) -> None:
        with self._lock:
            first = self.crashed is None
            if first:
                self.crashed = thread_name
        if first:
            log.critical("thread %s crashed; stopping the agent (exit %d)", thread_name,
                         EXIT_CRASH, exc_info=exc_info)
        else:
            log.error("thread %s crashed too: %s", thread_name, exc_info[1])

    def _hook(self, args) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else "?"
        self.report(name, (args.exc_type, args.exc_value, args.exc_traceback))


def _wrap_thread_run(report: Callable[[str, tuple], None]) -> None:
    original = threading.Thread.run
    if getattr(original, "_edgeagent_wrapped", False):
        return

    def run(self) -> None:
        try:
            original(self)
        except SystemExit:
            pass
        except BaseException:  # noqa: B902 - report any death, then let the thread end
            report(self.name, sys.exc_info())
    run._edgeagent_wrapped = True
    run.__wrapped__ = original
    threading.Thread.run = run


class KeepAlive:
    """Sends WATCHDOG=1 at most every `interval_s` (half of WatchdogSec=), and only when told
    the pipeline is progressing; a hung stage thus ends in a watchdog restart."""

    def __init__(self, notifier: Notifier, interval_s: Optional[float],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.interval_s = interval_s
        self._clock = clock
        self._last = None              # type: Optional[float]
        self.withheld_since = None     # type: Optional[float]

    @property
    def timeout_s(self) -> Optional[float]:
        """WatchdogSec= itself: how long systemd waits for the next keep-alive."""
        return None if self.interval_s is None else self.interval_s * 2

    def tick(self, progressing: bool, why_not: str = "") -> bool:
        """WATCHDOG=1 now if due and progressing; True when one was sent."""
        if self.interval_s is None:
            return False
        now = self._clock()
        if not progressing:
            if self.withheld_since is None:
                self.withheld_since = now
                log.error("watchdog: no progress (%s); keep-alives withheld, systemd restarts "
                          "the agent within %.0f s unless it recovers", why_not, self.timeout_s)
            return False
        if self.withheld_since is not None:
            log.warning("watchdog: progress again after %.1f s", now - self.withheld_since)
            self.withheld_since = None
        if self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return self.notifier.notify("WATCHDOG=1")

    def alive(self) -> bool:
        """A keep-alive from long work that reports progress (an engine build)."""
        if self.interval_s is None:
            return False
        self._last = self._clock()
        return self.notifier.notify("WATCHDOG=1")


class Lifecycle:
    """The sd_notify messages of the agent's life, each when it is due: READY=1 once,
    RELOADING=1 then READY=1 around a reload, STOPPING=1 once, proof of life during long work."""

    EXTEND_START_S = 60.0     # each progress report before READY extends TimeoutStartSec= so much

    def __init__(self, notifier: Notifier, keepalive: "KeepAlive") -> None:
        self.notifier = notifier
        self.keepalive = keepalive
        self.ready = False
        self.stopping = False

    def send_ready(self, status: str) -> bool:
        """READY=1 the first time; False when it was sent before."""
        if self.ready:
            return False
        self.ready = True
        self.notifier.notify("READY=1", "STATUS=" + status)
        return True

    def send_stopping(self) -> None:
        if not self.stopping:
            self.stopping = True
            self.notifier.notify("STOPPING=1", "STATUS=stopping: finishing frames, draining "
                                               "the outbox")

    def send_reloading(self) -> None:
        if self.ready:          # before READY=1 systemd is still waiting for the start
            self.notifier.notify("RELOADING=1",
                                 "MONOTONIC_USEC=%d" % int(time.monotonic() * 1e6))

    def send_reloaded(self, status: str) -> None:
        if self.ready:
            self.notifier.notify("READY=1", "STATUS=" + status)
        else:
            self.notifier.status(status)

    def working(self, status: str) -> None:
        """Long work that reports progress (an engine build): a keep-alive once running, more
        start time before READY."""
        self.notifier.status(status)
        if self.ready:
            self.keepalive.alive()
        else:
            self.notifier.notify("EXTEND_TIMEOUT_USEC=%d" % int(self.EXTEND_START_S * 1e6))


class StatusLine:
    """STATUS= for `systemctl status`: what runs and how fast; sent when it changes, at most
    every `every_s` for the rate alone."""

    def __init__(self, notifier: Notifier, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.notifier = notifier
        self.every_s = every_s
        self._clock = clock
        self._last_text = ""
        self._last_at = None           # type: Optional[float]
        self._last_count = 0

    def update(self, what: str, processed: int, camera: str) -> None:
        now = self._clock()
        if self._last_at is None:             # the first call only sets the baseline
            self._last_at, self._last_count = now, processed
            return
        if now - self._last_at < self.every_s:
            return
        fps = (processed - self._last_count) / (now - self._last_at)
        self._last_at, self._last_count = now, processed
        text = "%s: %.1f fps, %d frames, camera %s" % (what, fps, processed, camera)
        if text != self._last_text:
            self._last_text = text
            self.notifier.status(text)


def with_state_directory(config: AgentConfig, environ=os.environ) -> AgentConfig:
    """systemd's $STATE_DIRECTORY (StateDirectory=) when the config keeps the default state_dir."""
    granted = environ.get("STATE_DIRECTORY", "").split(":")[0]
    if not granted or config.state_dir != DEFAULT_STATE_DIR or granted == config.state_dir:
        return config
    import dataclasses  # novm: the dataclasses backport serves 3.6
    return dataclasses.replace(config, state_dir=granted)


def prepare_state_dir(path: str) -> None:
    """The outbox and engine cache folder exists and is writable, or an OutputError says why."""
    check_state_dir(path)
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as why:
        raise _cannot_create(path, why.strerror)
    if not os.access(path, os.W_OK):
        raise _not_writable(path)


def check_state_dir(path: str) -> None:
    """What prepare_state_dir would say, without creating anything (for `validate`)."""
    if os.path.isdir(path):
        if not os.access(path, os.W_OK | os.X_OK):
            raise _not_writable(path)
        return
    if os.path.lexists(path):
        raise _cannot_create(path, os.strerror(errno.EEXIST))
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise _cannot_create(path, os.strerror(errno.ENOTDIR))
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _cannot_create(path, os.strerror(errno.EACCES))


def _cannot_create(path: str, why: str):
    from ..errors import OutputError
    return OutputError("state_dir %s: cannot create it (%s); set state_dir in the config to "
                       "a writable folder (systemd: StateDirectory=edgeagent)" % (path, why))


def _not_writable(path: str):
    from ..errors import OutputError
    return OutputError("state_dir %s: not writable by this user; set state_dir in the config or "
                       "fix its owner" % path)


def dump_stacks_on_fatal_signals() -> None:
    """SIGABRT (systemd's watchdog kill), SIGSEGV...: every thread's stack goes to the journal,
    which shows where a hang was."""
    try:
        faulthandler.enable(all_threads=True)
    except (AttributeError, ValueError, OSError, RuntimeError):  # stderr without a descriptor
        log.debug("faulthandler not enabled: stderr has no file descriptor")


def warn_restart_only(old: AgentConfig, new: AgentConfig) -> None:
    """Settings a reload cannot apply (the MQTT link, outbox, identity and logs stay)."""
    for name in ("mqtt", "outbox", "device_id", "state_dir", "log_level", "log_json"):
        if getattr(new, name) != getattr(old, name):
            log.warning("reload: %s changed; that takes effect after a restart", name)


def close_quietly(backend) -> None:
    close = getattr(backend, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # releasing a model must not hide why we stop or reload
        log.exception("closing backend %s failed", getattr(backend, "name", "?"))
