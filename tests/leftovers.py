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
from typing import Dict, List

MARKER = "PYTEST_EDGEAGENT_SESSION"


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


def ours(root: int) -> Dict[int, str]:
    """pid -> command line of every living (not zombie) process below `root` or carrying this
    run's marker."""
    parents = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _stat(int(name))
            if stat is not None and stat[0] != "Z":
                parents[int(name)] = stat[1]
    found, frontier = {}, [root]
    while frontier:
        parent = frontier.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found[pid] = _cmdline(pid)
                frontier.append(pid)
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
