"""CSI boards' unit: the host /tmp stays visible (read-only) instead of a bind of the argus
socket that goes stale when nvargus-daemon restarts, start is ordered after nvargus-daemon,
and ExecStartPre waits for its socket (docs/service.md)."""

import os
import socket
import stat
import subprocess
import threading
import time

from agent.board.sandbox import ARGUS_SOCKET, render_drop_in
from agent.config.profiles import load_profile
from test_systemd_board_units import base_text


def test_csi_boards_keep_the_host_tmp_and_start_after_nvargus():
    text = render_drop_in("jetson-nano", load_profile("jetson-nano").sandbox)
    assert "PrivateTmp=no" in text and "After=nvargus-daemon.service" in text
    assert "Wants=nvargus-daemon.service" in text
    assert ARGUS_SOCKET not in " ".join(l for l in base_text().splitlines()
                                        if l.startswith("BindPaths"))
    assert "argus" not in render_drop_in("raspberrypi-4", load_profile("raspberrypi-4").sandbox)


def wait_command(text, socket_path):
    (line,) = [l for l in text.splitlines() if l.startswith("ExecStartPre=")]
    argv = line.split("=", 1)[1].lstrip("-+!@")
    timeout, seconds, shell, flag, script = argv.split(" ", 4)
    return [timeout, seconds, shell, flag, script.strip("'").replace(ARGUS_SOCKET, socket_path)]


def test_start_waits_for_the_argus_socket_and_goes_on_once_it_listens(tmp_path):
    # given the drop-in's ExecStartPre, pointed at a socket path that does not exist yet
    path = str(tmp_path / "argus_socket")
    command = wait_command(render_drop_in("jetson-nano", load_profile("jetson-nano").sandbox),
                           path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    started = threading.Event()

    def daemon_comes_up():       # nvargus-daemon starting after the agent was started
        started.wait(10)
        time.sleep(0.3)
        server.bind(path)
        server.listen(1)

    helper = threading.Thread(target=daemon_comes_up)
    helper.start()
    waiter = subprocess.Popen(command)
    started.set()
    try:
        # then the wait ends successfully once the socket exists, well before its timeout
        assert waiter.wait(timeout=25) == 0
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        helper.join(10)
        server.close()


BIND_PROBE = """
import os, socket, subprocess, sys
host, bound = sys.argv[1], sys.argv[2]
def listen():
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(host)
    server.listen(1)
    return server
def reaches(path):
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(path)
        return "yes"
    except OSError:
        return "no"
    finally:
        client.close()
server = listen()
open(bound, "w").close()
subprocess.run(["mount", "--bind", host, bound], check=True)   # what BindPaths= did
before = reaches(bound)
server.close()
os.unlink(host)                                                 # nvargus-daemon restarts
server = listen()
after = reaches(bound)
folder = os.path.dirname(host)                                  # ProtectSystem=strict: /tmp ro
subprocess.run(["mount", "--bind", folder, folder], check=True)
subprocess.run(["mount", "-o", "remount,bind,ro", folder], check=True)
try:
    open(os.path.join(folder, "probe"), "w").close()
    writable = "yes"
except OSError:
    writable = "no"
print(before, after, reaches(host), writable)
"""


def test_a_bound_socket_goes_stale_when_nvargus_restarts_but_the_host_path_does_not(tmp_path):
    # given the argus socket bound into a private mount namespace, as BindPaths= did
    host, bound = str(tmp_path / "argus_socket"), str(tmp_path / "private_argus_socket")
    probe = str(tmp_path / "probe.py")
    with open(probe, "w") as handle:
        handle.write(BIND_PROBE)
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "python3", probe,
                          host, bound], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         universal_newlines=True, timeout=60)
    assert out.returncode == 0, out.stdout
    before, bound_after, host_after, writable = out.stdout.split()
    # then the bind reached the daemon before its restart and not after; the host path, even
    # read-only (PrivateTmp=no under ProtectSystem=strict), reaches the new socket
    assert (before, bound_after, host_after, writable) == ("yes", "no", "yes", "no")
