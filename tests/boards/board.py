"""Emulated boards for `edgeagent deploy`: a real OpenSSH sshd per board on 127.0.0.1, a device
Python like the board's, recorded board files, and a `systemctl` stand-in that really runs the
deployed service (no systemd in a test root or a chroot).

* JetsonNano: JetPack 4.6's Python 3.6.15 as the system Python, with Ubuntu 18.04's pip 9.0.1 and
  JetPack's system numpy and OpenCV in its site-packages (no TensorRT: not on PyPI; see
  test_board_jetpack46.py); the device root carries the recorded Nano /etc/nv_tegra_release and
  device tree, and EDGEAGENT_ROOT points detection at it.
* PiBookworm: Debian bookworm arm64 (tests/boards/pi_root.py) under qemu-user, sshd running inside
  that chroot, an overlay over the cached root so each test starts clean; recorded Pi 4 files.

Both cache their slow parts under /var/cache/edgeagent-ci/<name>-<recipe hash>/ (rebuilt when
absent).
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from typing import List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
TESTS = os.path.dirname(HERE)
REPO = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, HERE)

from sshd import PATH_TAIL, free_port, keygen, sshd_config  # noqa: E402
import pi_root  # noqa: E402
from jetpack_python import jetpack_python  # noqa: E402

DEVICES = os.path.join(TESTS, "data", "devices")

# systemctl as the boards have it, minus systemd: `restart` runs the unit's ExecStart (paths under
# the device root R), `is-active` asks whether that process lives, `stop` ends it.
SHIM = r"""#!/bin/sh
R="{root}"
PID="$R/run/edgeagent.pid"
mkdir -p "$R/run" "$R/var/log"
echo "$*" >> "$R/var/log/systemctl.log"
alive() {{ [ -f "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null && \
          ! grep -q '^State:.*Z' "/proc/$(cat "$PID")/status" 2>/dev/null; }}
stop() {{
  if [ -f "$PID" ]; then
    kill "$(cat "$PID")" 2>/dev/null
    i=0
    while alive && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
    kill -9 "$(cat "$PID")" 2>/dev/null
    rm -f "$PID"
  fi
}}
case "$1" in
  restart|start)
    stop
    setsid "$R/opt/edgeagent/current/venv/bin/edgeagent" run \
      --config "$R/etc/edgeagent/config.yaml" </dev/null >>"$R/var/log/edgeagent.log" 2>&1 &
    echo $! > "$PID" ;;
  stop) stop ;;
  is-active) if alive; then echo active; else echo failed; exit 3; fi ;;
  is-failed) if alive; then echo active; exit 1; else echo failed; fi ;;
  show)
    if alive; then
      printf 'ActiveState=active\nSubState=running\nMainPID=%s\nResult=success\n' "$(cat "$PID")"
    else
      printf 'ActiveState=failed\nSubState=failed\nMainPID=0\nResult=exit-code\n'
    fi
    echo "NRestarts=0" ;;
esac
exit 0
"""


class Board:
    """One emulated device with its own sshd; stop() ends it and everything it started."""

    name = "board"
    python = "python3"
    remote_root = "/"     # as the workstation names it
    port = 0
    proc = None           # type: Optional[subprocess.Popen]

    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.client_key = os.path.join(workdir, "client_ed25519")
        self.client_pub = keygen(self.client_key)
        self.known_hosts = os.path.join(workdir, "known_hosts")

    def host_path(self, path: str) -> str:
        """A path on the device, as this machine sees it."""
        raise NotImplementedError

    def write_known_hosts(self, host_pub: str) -> None:
        with open(self.known_hosts, "w") as f:
            f.write("[127.0.0.1]:%d %s\n" % (self.port, " ".join(host_pub.split()[:2])))

    def spec(self) -> str:
        return "root@127.0.0.1:%d" % self.port

    def deploy_argv(self, *args: str) -> List[str]:
        return [sys.executable, "-m", "agent.fleet.deploy", self.spec(), "--known-hosts",
                self.known_hosts, "--key", self.client_key, "--remote-python", self.python,
                "--remote-root", self.remote_root] + list(args)

    def agent_log(self) -> str:
        path = self.host_path("/var/log/edgeagent.log")
        if not os.path.exists(path):
            return "(no agent log)"
        with open(path, errors="replace") as f:
            return f.read()[-4000:]

    def _wait_listening(self, log: str, deadline_s: float = 120) -> None:
        import socket
        deadline = time.monotonic() + deadline_s
        while True:
            if self.proc.poll() is not None:
                with open(log) as f:
                    raise RuntimeError("%s: sshd exited %s: %s" % (self.name, self.proc.returncode,
                                                                  f.read()[-2000:]))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("%s: sshd does not listen on %d" % (self.name, self.port))
                time.sleep(0.1)

    def stop(self) -> None:
        pid_file = self.host_path("/run/edgeagent.pid")
        if os.path.exists(pid_file):        # the service the shim started
            try:
                with open(pid_file) as f:
                    os.kill(int(f.read().strip()), signal.SIGKILL)
            except (OSError, ValueError):
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> "Board":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class JetsonNano(Board):
    """JetPack 4.6 on a Nano, as far as a workstation can be one (the CPU stays x86_64)."""

    name = "jetson-nano (JetPack 4.6)"

    def __init__(self, workdir: str) -> None:
        Board.__init__(self, workdir)
        self.python = jetpack_python()
        self.root = os.path.join(workdir, "root")
        shutil.copytree(os.path.join(DEVICES, "jetson-nano"), self.root, symlinks=True)
        self.remote_root = self.root
        for sub in ("opt", "etc/systemd/system", "run", "var/log", "var/lib/edgeagent"):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        shim = os.path.join(workdir, "shim")
        os.makedirs(shim)
        with open(os.path.join(shim, "systemctl"), "w") as f:
            f.write(SHIM.format(root=self.root))
        os.chmod(os.path.join(shim, "systemctl"), 0o755)
        host_pub = keygen(os.path.join(workdir, "host_ed25519"))
        authorized = os.path.join(workdir, "authorized_keys")
        with open(authorized, "w") as f:
            f.write(self.client_pub + "\n")
        self.port = free_port()
        config = os.path.join(workdir, "sshd_config")
        env = "PATH=%s:%s EDGEAGENT_ROOT=%s SHLVL=1" % (shim, PATH_TAIL, self.root)
        with open(config, "w") as f:
            f.write(sshd_config([self.port], os.path.join(workdir, "host_ed25519"),
                                os.path.join(workdir, "sshd.pid"), authorized, env))
        os.makedirs("/run/sshd", exist_ok=True)
        log = os.path.join(workdir, "sshd.log")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=out)
        self.write_known_hosts(host_pub)
        self._wait_listening(log)

    def host_path(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))


class PiBookworm(Board):
    """Raspberry Pi OS Bookworm (64-bit): Debian bookworm arm64 under qemu-user, sshd inside."""

    name = "raspberrypi-4 (Bookworm arm64, emulated)"

    def __init__(self, workdir: str, images: Optional[str] = None) -> None:
        Board.__init__(self, workdir)
        lower = pi_root.ensure_root()
        self.upper = os.path.join(workdir, "upper")
        self.merged = os.path.join(workdir, "merged")
        work = os.path.join(workdir, "overlay-work")
        for d in (self.upper, self.merged, work):
            os.makedirs(d)
        up = self.host_path   # before the overlay is mounted, files go to its upper layer
        shutil.copytree(os.path.join(DEVICES, "raspberrypi-4"), up("/board"), symlinks=True)
        for sub in ("/run/sshd", "/etc/ssh", "/etc/systemd/system", "/var/log", "/ea-shim"):
            os.makedirs(up(sub), exist_ok=True)
        if images:
            shutil.copytree(images, up("/srv/images"))
        with open(up("/ea-shim/systemctl"), "w") as f:
            f.write(SHIM.format(root=""))
        os.chmod(up("/ea-shim/systemctl"), 0o755)
        host_pub = keygen(up("/etc/ssh/ea_host_ed25519"))
        with open(up("/etc/ssh/ea_authorized_keys"), "w") as f:
            f.write(self.client_pub + "\n")
        self.port = free_port()
        with open(up("/etc/ssh/ea_sshd_config"), "w") as f:
            f.write(sshd_config([self.port], "/etc/ssh/ea_host_ed25519", "/run/ea_sshd.pid",
                                "/etc/ssh/ea_authorized_keys",
                                "PATH=/ea-shim:%s EDGEAGENT_ROOT=/board SHLVL=1" % PATH_TAIL))
        m = self.merged
        # Mounts live in a private mount namespace: they vanish with its last process.
        script = ("set -e; mount -t overlay overlay -o lowerdir={l},upperdir={u},workdir={w} {m}; "
                  "mount -t proc proc {m}/proc; mount --rbind /dev {m}/dev; "
                  "mount -t tmpfs tmpfs {m}/tmp; "
                  "exec chroot {m} /usr/sbin/sshd -D -e -f /etc/ssh/ea_sshd_config").format(
                      l=lower, u=self.upper, w=work, m=m)
        log = os.path.join(workdir, "sshd.log")
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private",
                                          "sh", "-c", script], stderr=out)
        self.write_known_hosts(host_pub)
        self._wait_listening(log)

    def host_path(self, path: str) -> str:
        # what the device writes lands in the overlay's upper layer
        return os.path.join(self.upper, path.lstrip("/"))
