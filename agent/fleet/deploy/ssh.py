"""Talking to one host through the system `ssh` and `sftp` binaries.

Argument lists only (never a local shell); the remote command line is built with shlex.quote.
Host keys are checked strictly against one known_hosts file: an unknown key aborts the host
unless --accept-new-host-keys (ssh's accept-new: adds new keys, never accepts a changed one).
One ControlMaster connection per host carries all of its commands and uploads.
"""

import json
import logging
import os
import shlex
import subprocess
import threading
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from . import remote_helper
from .errors import ConnectionLost, DeployError, HostKeyError, NotRunnable, Refused
from .inventory import Host

log = logging.getLogger(__name__)

_HELPER_SOURCE = None  # type: Optional[bytes]
_CHILDREN = set()      # running ssh/sftp processes, stopped on SIGINT/SIGTERM
_CHILDREN_LOCK = threading.Lock()


@dataclass(frozen=True)
class SshSettings:
    known_hosts: Optional[str] = None      # None: ssh's default (~/.ssh/known_hosts)
    accept_new_host_keys: bool = False
    ssh_config: Optional[str] = None       # ssh -F FILE
    connect_timeout_s: int = 10
    control_dir: Optional[str] = None      # None: no connection sharing


def helper_source() -> bytes:
    global _HELPER_SOURCE
    if _HELPER_SOURCE is None:
        with open(remote_helper.__file__.replace(".pyc", ".py"), "rb") as f:
            _HELPER_SOURCE = f.read()
    return _HELPER_SOURCE


def classify_ssh_failure(host: Host, stderr: str, known_hosts: Optional[str]) -> DeployError:
    """Turn ssh's exit 255 into a message saying what happened and what to do."""
    where = "[%s]:%d" % (host.address, host.port) if host.port != 22 else host.address
    kh = known_hosts or "~/.ssh/known_hosts"
    if "IDENTIFICATION HAS CHANGED" in stderr or "has changed and you have requested" in stderr:
        return HostKeyError(
            "%s: host key CHANGED (possible man-in-the-middle); deploy aborted for this host. If "
            "the device was reinstalled, verify its new key and run: ssh-keygen -R '%s' -f %s"
            % (host.name, where, kh))
    if "Host key verification failed" in stderr or "host key is known" in stderr:
        return HostKeyError(
            "%s: host key unknown (not in %s); deploy aborted for this host. Verify the key and "
            "add it (ssh-keyscan -p %d %s >> %s) or pass --accept-new-host-keys"
            % (host.name, kh, host.port, host.address, kh))
    return ConnectionLost("%s: ssh to %s failed: %s" % (host.name, where, stderr.strip()[-500:]))


class SshHost:
    """Commands and uploads for one host over one shared connection."""

    def __init__(self, host: Host, settings: SshSettings, control_name: str) -> None:
        self.host = host
        self.settings = settings
        self.control_path = (os.path.join(settings.control_dir, control_name)
                             if settings.control_dir else None)

    def options(self) -> List[str]:
        s = self.settings
        opts = ["-o", "BatchMode=yes",
                "-o", "StrictHostKeyChecking=%s" % ("accept-new" if s.accept_new_host_keys else "yes"),
                "-o", "ConnectTimeout=%d" % s.connect_timeout_s,
                "-o", "ServerAliveInterval=15", "-o", "Port=%d" % self.host.port]
        if s.known_hosts:
            opts += ["-o", "UserKnownHostsFile=%s" % s.known_hosts]
        if s.ssh_config:
            opts += ["-F", s.ssh_config]
        if self.host.user:
            opts += ["-o", "User=%s" % self.host.user]
        if self.host.key:
            opts += ["-i", self.host.key, "-o", "IdentitiesOnly=yes"]
        if self.control_path:
            opts += ["-o", "ControlMaster=auto", "-o", "ControlPath=%s" % self.control_path,
                     "-o", "ControlPersist=60"]
        return opts

    def _call(self, argv: List[str], stdin: Optional[bytes], timeout: float
              ) -> "subprocess.CompletedProcess":
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        with _CHILDREN_LOCK:
            _CHILDREN.add(proc)
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise ConnectionLost("%s: %s timed out after %.0f s" % (self.host.name, argv[0], timeout))
        finally:
            with _CHILDREN_LOCK:
                _CHILDREN.discard(proc)
        done = subprocess.CompletedProcess(argv, proc.returncode, out, err)
        if done.returncode == 255:
            raise classify_ssh_failure(self.host, done.stderr.decode("utf-8", "replace"),
                                       self.settings.known_hosts)
        return done

    def run(self, remote_argv: Sequence[str], stdin: Optional[bytes] = None,
            timeout: float = 120) -> "subprocess.CompletedProcess":
        """Run one remote command (an argument list, quoted here); 255 raises DeployError."""
        command = " ".join(shlex.quote(a) for a in remote_argv)
        return self._call(["ssh"] + self.options() + [self.host.address, command], stdin, timeout)

    def helper(self, op: str, args: dict, timeout: float = 900) -> dict:
        """Run one remote_helper operation with the host's python; its JSON result."""
        done = self.run([self.host.python, "-", op, json.dumps(args)], helper_source(), timeout)
        out = done.stdout.decode("utf-8", "replace").rstrip().splitlines()
        err = done.stderr.decode("utf-8", "replace").strip()
        last = out[-1] if out else ""
        if last.startswith(remote_helper.RESULT):
            return json.loads(last[len(remote_helper.RESULT):])
        if last.startswith(remote_helper.ERROR):
            why = json.loads(last[len(remote_helper.ERROR):])
            kind = {remote_helper.EXIT_REFUSED: Refused,
                    remote_helper.EXIT_NOT_RUNNABLE: NotRunnable}.get(done.returncode, DeployError)
            raise kind("%s: %s: %s" % (self.host.name, op, " | ".join(why.splitlines())))
        raise DeployError("%s: %s with %s failed (exit %d): %s" % (
            self.host.name, op, self.host.python, done.returncode, (err or last)[-800:]))

    def upload(self, pairs: Sequence[Tuple[str, str]], timeout: float = 1800) -> None:
        """Copy (local, remote) files with one sftp batch; the remote folder must exist."""
        if not pairs:
            return
        batch = "".join('put "%s" "%s"\n' % (_sftp_safe(a), _sftp_safe(b)) for a, b in pairs)
        done = self._call(["sftp", "-q", "-b", "-"] + self.options() + [self.host.address],
                          batch.encode(), timeout)
        if done.returncode != 0:
            raise DeployError("%s: upload failed: %s" % (
                self.host.name, done.stderr.decode("utf-8", "replace").strip()[-500:]))

    def close(self) -> None:
        if self.control_path:
            exit_master(self.control_path)


def exit_master(control_path: str) -> None:
    """Close a ControlMaster (ControlPersist keeps it otherwise) and its socket."""
    if os.path.exists(control_path):
        try:
            subprocess.run(["ssh", "-O", "exit", "-o", "ControlPath=%s" % control_path, "x"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10)
        except subprocess.TimeoutExpired:
            pass
    if os.path.exists(control_path):
        os.unlink(control_path)


def stop_children() -> None:
    with _CHILDREN_LOCK:
        running = list(_CHILDREN)
    for proc in running:
        try:
            proc.kill()
        except OSError:
            pass


def _sftp_safe(path: str) -> str:
    if any(c in path for c in '"\\\n'):
        raise DeployError("path %r cannot be sent through sftp (quote, backslash or newline in "
                          "it); rename it" % path)
    return path
