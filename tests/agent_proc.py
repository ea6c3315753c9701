"""The real agent as a child process, watched the way systemd and a dashboard watch it: a real
NOTIFY_SOCKET records every sd_notify datagram, stdout (--print) gives every result the agent
stored, stderr gives the log lines; everything is stamped with time.monotonic() on arrival.

    with NotifySocket() as notify, AgentProcess(config_path, notify=notify) as agent:
        assert notify.wait_for("READY", timeout_s=20)
        agent.stop()                         # SIGTERM; (exit code, seconds it took)
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from typing import Callable, Dict, List, Optional, Tuple

import yaml

from conftest import agent_command, agent_env, ROOT

TESTS = os.path.join(ROOT, "tests")


class NotifySocket:
    """An AF_UNIX datagram socket like systemd's notify socket; messages as (mono, {key: value})."""

    def __init__(self) -> None:
        # sun_path holds 107 bytes: pytest's tmp_path can be longer, so a short folder in /tmp
        self.dir = tempfile.mkdtemp(prefix="ea-notify-", dir="/tmp")
        self.path = os.path.join(self.dir, "notify.sock")
        self.messages = []             # type: List[Tuple[float, Dict[str, str]]]
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.2)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            with self._lock:
                self.messages.append((time.monotonic(), fields))

    def times(self, key: str, value: Optional[str] = None) -> List[float]:
        with self._lock:
            return [t for t, fields in self.messages
                    if key in fields and (value is None or fields[key] == value)]

    def values(self, key: str) -> List[str]:
        with self._lock:
            return [fields[key] for _, fields in self.messages if key in fields]

    def wait_for(self, key: str, value: str = "1", timeout_s: float = 10.0,
                 after: float = 0.0) -> Optional[float]:
        """The arrival time of the first `key=value` after `after`, or None."""
        deadline = time.monotonic() + timeout_s
        while True:
            found = [t for t in self.times(key, value) if t > after]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                return None
            time.sleep(0.02)

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        self._thread.join(1.0)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> "NotifySocket":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AgentProcess:
    """`python -m agent run --config CONFIG --print ARGS` (or `entry` instead of -m agent),
    with its stdout results and stderr log lines recorded as they come."""

    def __init__(self, config_path: str, args: Tuple[str, ...] = (),
                 notify: Optional[NotifySocket] = None, watchdog_usec: Optional[int] = None,
                 env: Optional[Dict[str, str]] = None, entry: Optional[List[str]] = None) -> None:
        extra = dict(env or {})
        if notify is not None:
            extra["NOTIFY_SOCKET"] = notify.path
        if watchdog_usec is not None:
            extra["WATCHDOG_USEC"] = str(watchdog_usec)   # no WATCHDOG_PID: it is for the child
        environment = agent_env(extra=extra)
        for name in ("WATCHDOG_PID", "JOURNAL_STREAM", "INVOCATION_ID", "STATE_DIRECTORY"):
            environment.pop(name, None)
        if notify is None:
            environment.pop("NOTIFY_SOCKET", None)
        command = (entry or agent_command([])) + ["run", "--config", config_path, "--print"]
        self.results = []              # type: List[Tuple[float, dict]]
        self.log = []                  # type: List[Tuple[float, str]]
        self._lock = threading.RLock()     # wait_result's `where` may read results too
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command + list(args), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, cwd=ROOT, env=environment,
                                     universal_newlines=True)
        self.pid = self.proc.pid
        self._readers = [threading.Thread(target=self._read, args=(self.proc.stdout, True),
                                          daemon=True),
                         threading.Thread(target=self._read, args=(self.proc.stderr, False),
                                          daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read(self, stream, is_stdout: bool) -> None:
        for line in stream:
            now, line = time.monotonic(), line.rstrip("\n")
            with self._lock:
                if is_stdout and line.startswith("{"):
                    self.results.append((now, json.loads(line)))
                else:
                    self.log.append((now, line))

    # ---- what it said ---------------------------------------------------------------------
    def seqs(self) -> List[int]:
        with self._lock:
            return [payload["seq"] for _, payload in self.results]

    def results_after(self, mono: float) -> List[dict]:
        with self._lock:
            return [payload for t, payload in self.results if t > mono]

    def log_text(self) -> str:
        with self._lock:
            return "\n".join(line for _, line in self.log)

    def log_times(self, pattern: str) -> List[float]:
        regex = re.compile(pattern)
        with self._lock:
            return [t for t, line in self.log if regex.search(line)]

    def wait_log(self, pattern: str, timeout_s: float, after: float = 0.0) -> Optional[float]:
        return wait_until(lambda: next((t for t in self.log_times(pattern) if t > after), None),
                          timeout_s)

    def wait_result(self, timeout_s: float, after: float = 0.0,
                    where: Callable[[dict], bool] = lambda payload: True) -> Optional[float]:
        def first():
            with self._lock:
                return next((t for t, p in self.results if t > after and where(p)), None)
        return wait_until(first, timeout_s)

    # ---- what happens to it -----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def send(self, signum: int) -> float:
        self.proc.send_signal(signum)
        return time.monotonic()

    def stop(self, signum: int = signal.SIGTERM, timeout_s: float = 30.0) -> Tuple[int, float]:
        """Signal it and wait: (exit code, seconds from the signal to the exit)."""
        sent = self.send(signum)
        try:
            code = self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError("agent did not exit within %s s of %s; log:\n%s" % (
                timeout_s, signal.Signals(signum).name, self.log_text()[-4000:]))
        for reader in self._readers:
            reader.join(5.0)
        return code, time.monotonic() - sent

    def __enter__(self) -> "AgentProcess":
        return self

    def __exit__(self, *exc) -> None:
        if self.running:
            self.proc.kill()
            self.proc.wait(5)


def wait_until(probe: Callable[[], object], timeout_s: float, every_s: float = 0.02):
    """probe()'s first truthy value within timeout_s, else None."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            return None
        time.sleep(every_s)


def write_config(path: str, **sections) -> str:
    """A config YAML at `path` (the agent's config keys as keyword arguments)."""
    with open(path, "w") as handle:
        yaml.safe_dump(sections, handle, default_flow_style=False)
    return path


def mqtt_section(port: int, **extra) -> dict:
    section = {"host": "127.0.0.1", "port": port, "reconnect": {"initial_s": 0.1, "max_s": 1.0}}
    section.update(extra)
    return section
