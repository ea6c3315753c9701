"""A real OpenSSH sshd on 127.0.0.1 with throwaway keys, for deploy tests.

One sshd listens on several ports (so a test can have a "known" and an "unknown" host) and serves
many fake devices: each device is a remote root folder (``--remote-root``). Sessions get a PATH
whose first folder holds a ``systemctl`` stand-in (systemd does not run here):
tests/systemctl_shim.py, which behaves like systemd with a Type=notify unit (restart blocks until
READY=1 and fails when the service dies first) and runs tests/fake_device_agent.py as the service:

* every call appends ``<args>`` to ``shim_log``;
* ``is-active`` prints ``failed`` and exits 3 while ``fail_flag`` exists.

The session also gets ``SHLVL=1``: Debian's bash then skips the user's ~/.bashrc for ssh
commands (bash reads it only for a top-level shell), so the developer's pyenv setup on this
machine does not leak into the "device" and slow every command down.
"""

import os
import sys
import socket
import subprocess
import time
from typing import List

SSHD = "/usr/sbin/sshd"

_SHIM = """#!/bin/sh
SHIM_LOG="{log}" SHIM_FAIL_FLAG="{flag}" SHIM_STATE="{state}" exec {python} {shim} "$@"
"""

SSHD_CONFIG = """\
ListenAddress 127.0.0.1
{ports}
HostKey {host_key}
PidFile {pid}
AuthorizedKeysFile {authorized}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
MaxSessions 50
MaxStartups 100:30:200
LogLevel ERROR
Subsystem sftp internal-sftp
SetEnv {env}
"""
PATH_TAIL = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def sshd_config(ports: List[int], host_key: str, pid: str, authorized: str, env: str) -> str:
    """The test sshd's config (here and on the emulated boards): keys only, loopback only,
    `env` set for every session (the shims' PATH first)."""
    return SSHD_CONFIG.format(ports="\n".join("Port %d" % p for p in ports), host_key=host_key,
                              pid=pid, authorized=authorized, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: str) -> str:
    """A throwaway ed25519 key pair; returns the public key line."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "edgeagent-test",
                    "-f", path], check=True)
    with open(path + ".pub") as f:
        return f.read().strip()


class Sshd:
    """sshd -D on ``ports`` (127.0.0.1); stop() ends it. Files live under ``workdir``."""

    def __init__(self, workdir: str, nports: int = 2) -> None:
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.ports = [free_port() for _ in range(nports)]
        self.host_key_pub = keygen(os.path.join(workdir, "host_ed25519"))
        self.client_key = os.path.join(workdir, "client_ed25519")
        client_pub = keygen(self.client_key)
        authorized = os.path.join(workdir, "authorized_keys")
        with open(authorized, "w") as f:
            f.write(client_pub + "\n")
        self.shim_dir = os.path.join(workdir, "shim")
        self.shim_log = os.path.join(workdir, "systemctl.log")
        self.fail_flag = os.path.join(workdir, "is-active-fails")
        self.shim_state = os.path.join(workdir, "units")
        self._write_shim()
        self.config = os.path.join(workdir, "sshd_config")
        with open(self.config, "w") as f:
            f.write(sshd_config(self.ports, os.path.join(workdir, "host_ed25519"),
                                os.path.join(workdir, "pid"), authorized,
                                "PATH=%s:%s SHLVL=1" % (self.shim_dir, PATH_TAIL)))
        os.makedirs("/run/sshd", exist_ok=True)   # sshd's privilege separation folder
        self.log_path = os.path.join(workdir, "sshd.log")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", self.config], stderr=log)
        self._wait_listening()

    def _write_shim(self) -> None:
        os.makedirs(self.shim_dir, exist_ok=True)
        path = os.path.join(self.shim_dir, "systemctl")
        with open(path, "w") as f:
            f.write(_SHIM.format(log=self.shim_log, flag=self.fail_flag, state=self.shim_state,
                                 python=DEVICE_PYTHON, shim=os.path.join(
                                     os.path.dirname(os.path.abspath(__file__)),
                                     "systemctl_shim.py")))
        os.chmod(path, 0o755)

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10
        for port in self.ports:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError("sshd exited with %s" % self.proc.returncode)
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("sshd does not listen on %d" % port)
                    time.sleep(0.05)

    def known_hosts_line(self, port: int, pub: str = "") -> str:
        """A known_hosts line for 127.0.0.1:port with this sshd's key (or ``pub``)."""
        key = " ".join((pub or self.host_key_pub).split()[:2])
        return "[127.0.0.1]:%d %s\n" % (port, key)

    def write_known_hosts(self, path: str, ports: List[int]) -> str:
        with open(path, "w") as f:
            f.writelines(self.known_hosts_line(p) for p in ports)
        return path

    def shim_calls(self) -> List[str]:
        if not os.path.exists(self.shim_log):
            return []
        with open(self.shim_log) as f:
            return [line.strip() for line in f]

    def services(self) -> List[dict]:
        """The stand-in systemd's unit states (one per device root and service)."""
        import glob
        import json
        found = []
        for path in glob.glob(os.path.join(self.shim_state, "*", "state.json")):
            try:
                with open(path) as f:
                    found.append(dict(json.load(f), folder=os.path.dirname(path)))
            except (OSError, ValueError):
                pass
        return found

    def stop_services(self) -> None:
        """Stop every fake agent and supervisor the systemctl stand-in started."""
        import signal
        for state in self.services():
            for pid in (state.get("supervisor"), state.get("MainPID")):
                if pid:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass

    def stop(self) -> None:
        self.stop_services()
        from leftovers import stop_children
        stop_children(self.proc.pid)        # its sessions, so their ssh masters exit too
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# ---- shared by tests/test_deploy*.py: one sshd, one test wheel per pytest session ----------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEVICE_PYTHON = "/usr/bin/python3"   # apt python3 + python3-numpy/-yaml/-paho-mqtt, like JetPack
_SESSION = {}  # type: dict

# Used only while agent/cli.py does not exist yet: the wheel then gets this `edgeagent detect
# --json` (real agent.board.device code) so the deployed release can really run it.
STAND_IN_CLI = '''"""Stand-in agent/cli.py (only `detect --json`) added by tests/sshd.py for deploy tests."""
import argparse
import json
import sys

from agent.board.device import detect_device


def main():
    parser = argparse.ArgumentParser(prog="edgeagent")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("detect").add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.command != "detect":
        parser.error("this stand-in only knows `detect --json`")
    print(json.dumps({"device": detect_device().to_json()}))
    return 0
'''


def session_sshd() -> Sshd:
    """One sshd for the whole test session (stopped at exit)."""
    if "sshd" not in _SESSION:
        import atexit
        import tempfile
        server = Sshd(tempfile.mkdtemp(prefix="ea-sshd-"))
        atexit.register(server.stop)
        from leftovers import at_session_end
        at_session_end(server.stop)
        _SESSION["sshd"] = server
    return _SESSION["sshd"]


def stop_session_services() -> None:
    """Stop the fake agents the systemctl stand-in started (tests call it when they end)."""
    if "sshd" in _SESSION:
        _SESSION["sshd"].stop_services()


def session_wheel() -> str:
    """The agent wheel of this checkout, built once per session (with the stand-in CLI if the
    checkout has no agent/cli.py yet)."""
    if "wheel" not in _SESSION:
        import shutil
        import tempfile
        from agent.fleet.deploy.artifacts import _copy_checkout, build_wheel
        work = tempfile.mkdtemp(prefix="ea-wheel-")
        source = REPO
        if not os.path.exists(os.path.join(REPO, "agent", "cli.py")):
            source = os.path.join(work, "src")
            os.makedirs(source)
            _copy_checkout(REPO, source)
            with open(os.path.join(source, "agent", "cli.py"), "w") as f:
                f.write(STAND_IN_CLI)
        _SESSION["wheel"] = build_wheel(source, os.path.join(work, "wheel"))
        if source != REPO:
            shutil.rmtree(source)
    return _SESSION["wheel"]


def session_wheelhouse() -> str:
    """The agent's dependency wheels for the device python, downloaded once into /tmp."""
    folder = "/tmp/edgeagent-test-wheelhouse"
    marker = os.path.join(folder, ".complete")
    if not os.path.exists(marker):
        subprocess.run([DEVICE_PYTHON, "-m", "pip", "download", "-q", "--only-binary=:all:",
                        "-d", folder, "numpy", "pyyaml", "paho-mqtt>=1.6,<3",
                        "opencv-python-headless"], check=True)
        open(marker, "w").close()
    return folder


def tree(root: str) -> List[tuple]:
    """Every path under root with its type, mode, size, mtime and link target."""
    out = []
    for base, dirs, files in os.walk(root):
        for name in sorted(dirs + files):
            path = os.path.join(base, name)
            st = os.lstat(path)
            link = os.readlink(path) if os.path.islink(path) else None
            out.append((os.path.relpath(path, root), st.st_mode, st.st_size, st.st_mtime_ns, link))
    return sorted(out)


def current_release(root: str) -> str:
    return os.readlink(os.path.join(root, "opt", "edgeagent", "current"))


def deploy_command(server: Sshd, known_hosts: str, *args: str, validate: bool = False) -> List[str]:
    """`python -m agent.fleet.deploy` with this sshd's client key, a test wheel and the device python.
    These devices run tests/fake_device_agent.py on placeholder models and have no inference
    runtime, so the device-side `edgeagent validate` (which loads the model) is off unless a test
    asks for it; the emulated boards (tests/test_board_*.py) run it for real on real models."""
    return [sys.executable, "-m", "agent.fleet.deploy", "--known-hosts", known_hosts,
            "--key", server.client_key, "--wheel", session_wheel(),
            "--remote-python", DEVICE_PYTHON, "--health-timeout", "20"] + \
        ([] if validate else ["--no-validate"]) + list(args)


def run_deploy(server: Sshd, known_hosts: str, *args: str, report: str = "",
               timeout: float = 300, validate: bool = False) -> "tuple":
    """Run a deploy to the end; (CompletedProcess, the JSON report or None)."""
    import json
    extra = ["--report-json", report] if report else []
    done = subprocess.run(deploy_command(server, known_hosts, *args, validate=validate) + extra,
                          cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)
    data = None
    if report and os.path.exists(report):
        with open(report) as f:
            data = json.load(f)
    return done, data
