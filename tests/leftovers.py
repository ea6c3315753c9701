"""Nothing a test starts may outlive the suite: the processes this pytest process started,
directly or through the helpers (mosquitto, ffmpeg, sshd, RTSP servers, agents). Two nets:
the process tree below pytest, and a marker in the environment that every child inherits
(PYTEST_EDGEAGENT_SESSION), which also finds a process whose parent died or that detached.

Only those are looked at: the machine's own services (a Mosquitto on 1883, databases) and
other people's test runs are never touched or reported."""

import os
import signal
import time
import uuid
from typing import Callable, Dict, List

MARKER = "PYTEST_EDGEAGENT_SESSION"
_AT_END = []   # type: List[Callable[[], object]]


def at_session_end(stop: Callable[[], object]) -> None:
    """Run `stop` when the session ends, before the check (for session-wide helpers such as
    one sshd for every deploy test, which would otherwise stop only at interpreter exit)."""
    _AT_END.append(stop)


def stop_children(pid: int, grace_s: float = 2.0) -> None:
    """SIGTERM every process below `pid` (an sshd's sessions), SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        below = _below(pid)
        for child in below:
            try:
                os.kill(child, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while below and _below(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def mark_session() -> None:
    """Put this run's marker into the environment children inherit."""
    os.environ[MARKER] = uuid.uuid4().hex


def _marked(pid: int, token: bytes) -> bool:
    try:
        with open("/proc/%d/environ" % pid, "rb") as handle:
            return token in handle.read().split(b"\0")
    except OSError:          # gone, or not ours to read
        return False


def _stat(pid: int):
    """(state, ppid) of a process, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            text = handle.read()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()
    return fields[0], int(fields[1])


def _cmdline(pid: int) -> str:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return "?"


def _parents() -> Dict[int, int]:
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and stat[0] != "Z":
                parents[int(name)] = stat[1]
    return parents


def _below(root: int, parents: Dict[int, int] = None) -> List[int]:
    parents = _parents() if parents is None else parents
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found.append(pid)
                frontier.append(pid)
    return found


def ours(root: int) -> Dict[int, str]:
    """pid -> command line of every living (not zombie) process below `root` or carrying this
    run's marker."""
    parents = _parents()
    found = dict((pid, _cmdline(pid)) for pid in _below(root, parents))
    token = ("%s=%s" % (MARKER, os.environ.get(MARKER, ""))).encode()
    if os.environ.get(MARKER):
        for pid in parents:
            if pid != root and pid not in found and _marked(pid, token):
                found[pid] = _cmdline(pid)
    return found


def reap() -> None:
    """Collect exited children that no test waited for (at the end only: earlier it would take
    exit statuses that tests are about to read)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def leftovers(grace_s: float = 5.0) -> List[str]:
    """What still runs below this process after `grace_s` (things being stopped get that
    long); each is then killed so it does not outlive the suite either."""
    while _AT_END:
        stop = _AT_END.pop()
        try:
            stop()
        except Exception as why:  # a helper that fails to stop shows up below as a leftover
            print("session-end stop %r failed: %s" % (stop, why))
    deadline = time.monotonic() + grace_s
    while True:
        reap()
        alive = ours(os.getpid())
        if not alive or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for pid in alive:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    reap()
    return ["pid %d: %s" % (pid, cmd[:200]) for pid, cmd in sorted(alive.items())]
