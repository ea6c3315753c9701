"""Nothing a test starts may outlive the suite: the processes this pytest process started,
directly or through the helpers (mosquitto, ffmpeg, sshd, RTSP servers, agents), found by
walking the process tree down from pytest. pytest becomes a child subreaper first, so a
grandchild whose parent died (an ffmpeg left by a killed agent) is still one of ours.

Only descendants of this pytest process are looked at: the machine's own services (a
Mosquitto on 1883, databases) are never touched or reported."""

import ctypes
import os
import signal
import time
from typing import Dict, List

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
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


def live_descendants(root: int) -> Dict[int, str]:
    """pid -> command line of every living (not zombie) process below `root`."""
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
    return found


def reap() -> None:
    """Collect exited children (a subreaper inherits orphans' exit statuses)."""
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
        alive = live_descendants(os.getpid())
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
