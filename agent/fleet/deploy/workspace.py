"""The workstation's scratch space for one deploy run, cleaned on every way out.

A temp folder ``edgeagent-deploy-<pid>-*`` holds the built wheel, rendered configs and the ssh
ControlMaster sockets. It is removed, and every master connection closed, when the run ends,
raises, or gets SIGINT/SIGTERM/SIGHUP (running ssh/sftp children are stopped first; a device
finishes its current step alone, see remote_helper). A SIGKILL cannot be caught: the next run
sweeps the folders of dead runs (closing their masters) before it starts.
"""

import logging
import os
import shutil
import signal
import tempfile
from typing import Any, List

from . import ssh
from .remote_helper import pid_alive

log = logging.getLogger(__name__)
PREFIX = "edgeagent-deploy-"
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def close_masters(folder: str) -> None:
    control = os.path.join(folder, "c")
    if os.path.isdir(control):
        for name in os.listdir(control):
            ssh.exit_master(os.path.join(control, name))


def sweep_dead_runs(parent: str) -> List[str]:
    """Folders (and masters) left by runs that were SIGKILLed: the pid in the name is gone."""
    removed = []
    for name in os.listdir(parent):
        pid = name[len(PREFIX):].split("-", 1)[0]
        path = os.path.join(parent, name)
        if not name.startswith(PREFIX) or not pid.isdigit() or pid_alive(int(pid)):
            continue
        if not os.path.isdir(path) or os.stat(path).st_uid != os.geteuid():
            continue
        close_masters(path)
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    if removed:
        log.info("removed %d folder(s) of killed deploy runs", len(removed))
    return removed


class Workspace:
    def __init__(self, parent: str = "") -> None:
        self.parent = parent or tempfile.gettempdir()
        if len(self.parent) > 60:     # ssh control sockets: a unix socket path has <= 107 bytes
            self.parent = "/tmp"
        self.path = ""
        self._old = {}  # type: dict

    def __enter__(self) -> str:
        sweep_dead_runs(self.parent)
        self.path = tempfile.mkdtemp(prefix="%s%d-" % (PREFIX, os.getpid()), dir=self.parent)
        for sig in SIGNALS:
            self._old[sig] = signal.signal(sig, self._on_signal)
        return self.path

    def cleanup(self) -> None:
        ssh.stop_children()
        close_masters(self.path)
        shutil.rmtree(self.path, ignore_errors=True)

    def _on_signal(self, signum: int, frame: Any) -> None:
        log.error("deploy stopped by signal %d: closing connections, removing %s; each device "
                  "finishes its current step alone", signum, self.path)
        self.cleanup()
        os._exit(128 + signum)

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self.cleanup()
