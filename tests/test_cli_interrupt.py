"""Ctrl-C that lands inside a finalizer (__del__) is raised once the finalizer is done, not
printed by Python as "Exception ignored ... Traceback" and lost (seen on 3.6 with Ctrl-C during
subprocess.Popen.__del__ in `edgeagent detect`)."""

import os
import signal
import time

import pytest

from agent import cli


class SignalledInFinalizer:
    """Sends the process SIGINT from its own __del__, so the handler runs inside it."""

    def __del__(self):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):       # bytecodes: the handler runs between two of them
            pass


def test_ctrl_c_inside_a_finalizer_is_raised_after_it(capfd):
    previous = cli._interrupt_outside_finalizers()
    try:
        # given Ctrl-C while a finalizer runs
        with pytest.raises(KeyboardInterrupt):
            doomed = SignalledInFinalizer()
            del doomed
            # then KeyboardInterrupt reaches the program soon after (generous deadline)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        for signum, handler in previous:
            signal.signal(signum, handler)
    # and Python printed nothing about an ignored exception
    assert "Exception ignored" not in capfd.readouterr().err


def test_ctrl_c_elsewhere_is_raised_at_once():
    previous = cli._interrupt_outside_finalizers()
    try:
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                time.sleep(0.01)
    finally:
        for signum, handler in previous:
            signal.signal(signum, handler)
    assert signal.getsignal(signal.SIGINT) is previous[0][1]
