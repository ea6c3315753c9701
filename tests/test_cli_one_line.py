"""One line, no traceback, everywhere: Ctrl-C at any moment of every command, a stdout whose
reader went away (`edgeagent detect | head`), and `validate` checking without touching the
camera. Through the real CLI (`python -m agent`)."""

import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from broker import free_port
from conftest import NATIVE_STDERR, ROOT, agent_command, agent_env, run_agent

DELAYS_S = (0.05, 0.3, 1.0, 3.0)    # after Python is up: importing, loading, running
# What the `edgeagent` script does, saying "up" on fd $UP_FD once Python has imported
# agent.cli: a Ctrl-C before that is Python's own start-up, which no program can turn into one
# line (agent/__main__.py catches one during its import of agent.cli).
UP = ("import os, sys; from agent.cli import main; fd = int(os.environ.pop('UP_FD')); "
      "os.write(fd, b'up'); os.close(fd); sys.exit(main())")


def stderr_lines(text):
    return [line for line in text.splitlines() if line.strip() and line not in NATIVE_STDERR]


def interrupted(args, delay_s, tmp_path):
    """Start `edgeagent ARGS`, press Ctrl-C delay_s after Python is up: (exit code, stderr)."""
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([agent_command([])[0], "-c", UP] + list(args),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            universal_newlines=True, cwd=str(tmp_path),
                            env=agent_env(extra={"UP_FD": str(write_end)}), pass_fds=(write_end,))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as up:
        assert up.read(2) == b"up", "the interpreter did not start"
    time.sleep(delay_s)
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError("edgeagent %s ignored Ctrl-C: %s" % (args[0], err[-2000:]))
    return proc.returncode, err


COMMANDS = {
    "validate": lambda t: ["validate", "--pipeline", "yolov8-coco"],
    "detect": lambda t: ["detect", "--json"],
    "run": lambda t: ["run", "--no-mqtt", "--state-dir", str(t / "state"), "--log-level",
                      "error", "--source", "synthetic://?live=1&fps=30"],
    "monitor": lambda t: ["monitor", "--port", str(free_port()), "--duration", "30"],
    "build-engine": lambda t: ["build-engine", "--pipeline", "face-detect", "--cache-dir",
                               str(t / "engines")],
}


@pytest.mark.parametrize("delay_s", DELAYS_S)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_ctrl_c_at_any_moment_of_any_command_gives_at_most_one_line(tmp_path, command, delay_s):
    code, err = interrupted(COMMANDS[command](tmp_path), delay_s, tmp_path)
    # then no traceback, at most one line of its own (a command that finished first may have
    # said why it ended), and an exit code a shell understands: 130 for Ctrl-C
    assert "Traceback" not in err, err
    own = [line for line in stderr_lines(err) if line.startswith("edgeagent")]
    assert len(own) <= 1, err
    if code == 130:
        assert own == ["edgeagent%s: interrupted" % ("" if not own[0].startswith(
            "edgeagent " + command) else " " + command)], err
    else:   # it had finished (or stopped cleanly: run's first Ctrl-C) before the Ctrl-C, or
        # the Ctrl-C came while Python was shutting down, which ends it silently, as a shell's
        # Ctrl-C does (-SIGINT)
        assert code in (0, 2, 3, 4, 6, -signal.SIGINT), err


def closed_stdout_run(args):
    """`edgeagent ARGS` writing to a pipe nobody reads any more: (exit code, stderr)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        proc = subprocess.run(agent_command(args), stdout=write_end, stderr=subprocess.PIPE,
                              universal_newlines=True, cwd=ROOT, env=agent_env(), timeout=120)
    finally:
        os.close(write_end)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("args", [["detect"], ["detect", "--json"]])
def test_detect_into_a_closed_pipe_says_so_in_one_line(args):
    code, err = closed_stdout_run(args)
    assert code == 141 and "Traceback" not in err, err
    assert stderr_lines(err) == ["edgeagent detect: stdout closed before the output was "
                                 "written (broken pipe)"]


def test_run_print_into_a_closed_pipe_stops_with_one_output_error(tmp_path, sample_video):
    code, err = closed_stdout_run(["run", "--no-mqtt", "--print", "--log-level", "error",
                                   "--state-dir", str(tmp_path), "--source",
                                   "file://" + sample_video])
    assert code == 6 and "Traceback" not in err, err
    assert stderr_lines(err) == ["edgeagent run: output error: stdout closed (broken pipe): "
                                 "nothing reads --print any more; the results stay in the outbox"]


# ---- validate without the camera ------------------------------------------------------------

class CountingServer:
    """A TCP port that counts who connects (a camera validate must leave alone)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.mark.parametrize("scheme", ["rtsp", "http"])
def test_validate_checks_a_camera_uri_without_connecting_to_it(tmp_path, scheme):
    server = CountingServer()
    try:
        uri = "%s://127.0.0.1:%d/cam" % (scheme, server.port)
        run = run_agent(["validate", "--pipeline", "face-detect", "--source", uri,
                         "--state-dir", str(tmp_path / "state")])
    finally:
        server.close()
    assert run.returncode == 0, run.stderr
    assert server.connections == 0
    assert not os.path.exists(str(tmp_path / "state"))      # nothing created either


def test_validate_checks_a_pipeline_alone(tmp_path):
    run = run_agent(["validate", "--pipeline", os.path.join(ROOT, "pipelines",
                                                           "yolov8-coco.yaml")])
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == (
        "%s: ok (pipeline yolov8-coco, model %s on onnxruntime)" % (
            os.path.join(ROOT, "pipelines", "yolov8-coco.yaml"),
            os.path.join(ROOT, "models", "yolov8n_untrained_coco80.onnx")))
