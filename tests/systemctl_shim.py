"""A `systemctl` stand-in for the deploy tests' fake devices (systemd does not run here), named
so: it behaves like systemd with a Type=notify unit, as far as a deploy can see.

* ``restart``/``start`` launch the service under a supervisor process and block until the service
  sends READY=1 on $NOTIFY_SOCKET (exit 0), or exits first, or the start times out (exit 1, the
  unit is ``failed``), as real systemd does for Type=notify;
* a service that dies after READY leaves the unit ``failed`` (Result=exit-code);
* ``is-active`` and ``show -p ...`` report ActiveState, SubState, MainPID, NRestarts, Result,
  ExecMainStatus and Type=notify; ``stop`` stops it.

The service is tests/fake_device_agent.py for the device root in $EDGEAGENT_ROOT (the deploy helper
sets it). Every call is appended to $SHIM_LOG. While $SHIM_FAIL_FLAG exists, is-active says failed.
State lives in $SHIM_STATE/<root hash>-<service>/state.json.
"""

import hashlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT_S = float(os.environ.get("SHIM_START_TIMEOUT", "30"))


def unit_dir(service):
    root = os.environ.get("EDGEAGENT_ROOT", "/")
    key = hashlib.sha1(root.encode()).hexdigest()[:12]
    path = os.path.join(os.environ["SHIM_STATE"], "%s-%s" % (key, service))
    os.makedirs(path, exist_ok=True)
    return root, path


def read_state(folder):
    state = {"ActiveState": "inactive", "SubState": "dead", "MainPID": 0, "NRestarts": 0,
             "Result": "success", "ExecMainStatus": 0, "Type": "notify", "supervisor": 0}
    try:
        with open(os.path.join(folder, "state.json")) as f:
            state.update(json.load(f))
    except (OSError, ValueError):
        pass
    return state


def write_state(folder, **changes):
    state = read_state(folder)
    state.update(changes)
    tmp = os.path.join(folder, "state.json.%d" % os.getpid())
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.rename(tmp, os.path.join(folder, "state.json"))


def alive(pid):
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except OSError:
        return False


def stop(folder):
    state = read_state(folder)
    for pid in (state["supervisor"], state["MainPID"]):
        if alive(pid):
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (alive(state["supervisor"]) or alive(state["MainPID"])):
        time.sleep(0.05)
    for pid in (state["supervisor"], state["MainPID"]):
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    write_state(folder, ActiveState="inactive", SubState="dead", MainPID=0, supervisor=0)


def supervise(root, folder):
    """Runs detached: starts the service, turns its READY=1 and its exit into unit states."""
    sock_path = os.path.join(folder, "notify")
    if os.path.exists(sock_path):
        os.unlink(sock_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    with open(os.path.join(folder, "service.log"), "ab") as out:
        child = subprocess.Popen([sys.executable, os.path.join(HERE, "fake_device_agent.py"), root],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 env=dict(os.environ, NOTIFY_SOCKET=sock_path))
    write_state(folder, ActiveState="activating", SubState="start", MainPID=child.pid,
                supervisor=os.getpid(), Result="success")

    def on_term(*_):
        child.terminate()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()
        write_state(folder, ActiveState="inactive", SubState="dead", MainPID=0, supervisor=0)
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    ready = False
    while child.poll() is None:
        if select.select([sock], [], [], 0.1)[0]:
            if b"READY=1" in sock.recv(4096).split(b"\n") and not ready:
                ready = True
                write_state(folder, ActiveState="active", SubState="running")
    write_state(folder, ActiveState="failed", SubState="failed", MainPID=0, supervisor=0,
                Result="exit-code", ExecMainStatus=child.returncode)


def start(root, folder):
    state = read_state(folder)
    write_state(folder, ActiveState="activating", SubState="start",
                NRestarts=state["NRestarts"] + (1 if state["ActiveState"] != "inactive" else 0))
    if os.fork() == 0:          # the supervisor: detached, no pipe of ours held open
        os.setsid()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        try:
            supervise(root, folder)
        finally:
            os._exit(0)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        state = read_state(folder)
        if state["ActiveState"] in ("active", "failed"):
            break
        time.sleep(0.05)
    if state["ActiveState"] == "active":
        return 0
    if state["ActiveState"] != "failed":
        stop(folder)
        write_state(folder, ActiveState="failed", SubState="failed", Result="timeout")
    sys.stderr.write("Job for %s failed because the control process exited with error code.\n"
                     % os.path.basename(folder).split("-", 1)[1])
    return 1


def main():
    args = sys.argv[1:]
    with open(os.environ["SHIM_LOG"], "a") as f:
        f.write(" ".join(args) + "\n")
    verbs = [a for a in args if not a.startswith("-")]
    if not verbs or verbs[0] in ("daemon-reload", "enable", "disable"):
        return 0
    verb, service = verbs[0], (verbs[1] if len(verbs) > 1 else "edgeagent").replace(".service", "")
    root, folder = unit_dir(service)
    state = read_state(folder)
    flagged = os.path.exists(os.environ.get("SHIM_FAIL_FLAG", "/nonexistent"))
    if verb == "is-active":
        shown = "failed" if flagged else state["ActiveState"]
        print(shown)
        return 0 if shown == "active" else 3
    if verb == "show":
        if flagged:
            state.update(ActiveState="failed", SubState="failed")
        wanted = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "-p"]
        for key in wanted or sorted(state):
            print("%s=%s" % (key, state.get(key, "")))
        return 0
    if verb == "stop":
        stop(folder)
        return 0
    if verb in ("restart", "start"):
        if verb == "restart" or state["ActiveState"] != "active":
            stop(folder)
            return start(root, folder)
        return 0
    sys.stderr.write("systemctl shim: unknown verb %s\n" % verb)
    return 1


if __name__ == "__main__":
    sys.exit(main())
