"""Ending a child process a test started, so that nothing it starts outlives it."""

import subprocess


def end(proc, signum, timeout_s=60):
    """Send `signum` (SIGINT, SIGTERM) and collect (stdout, stderr). If the child has not
    exited within timeout_s it is killed, and the test fails saying so."""
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError("%s did not exit %s s after signal %d (killed); stderr:\n%s"
                             % (" ".join(map(str, proc.args)), timeout_s, signum, err))
