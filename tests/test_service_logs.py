"""Logs for journald and for log shippers: a syslog priority on every line under systemd, no
second timestamp, JSON lines with --log-json."""

import json
import logging
import os
import subprocess
import sys

import pytest

from conftest import ROOT, agent_command, agent_env, run_agent


# ---- logs for journald and for log shippers --------------------------------------------------

def test_logs_to_the_journal_carry_priority_and_no_second_timestamp(tmp_path, sample_video):
    # given stderr is a stream whose device:inode $JOURNAL_STREAM names, as under systemd
    read_end, write_end = os.pipe()
    stat = os.fstat(write_end)
    env = {"JOURNAL_STREAM": "%d:%d" % (stat.st_dev, stat.st_ino)}
    proc = subprocess.Popen(agent_command(["run", "--no-mqtt", "--source", "file://" + sample_video,
                                           "--state-dir", str(tmp_path), "--max-frames", "3"]),
                            stdout=subprocess.DEVNULL, stderr=write_end, cwd=ROOT,
                            env=agent_env(extra=env))
    os.close(write_end)
    with os.fdopen(read_end) as stream:
        lines = stream.read().splitlines()
    proc.wait(30)
    # then the agent's own log lines start with a syslog priority and no timestamp
    logged = [line for line in lines if line.startswith("<")]
    assert logged, lines
    assert all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in logged)
    assert any(line == "<6>INFO agent.daemon.service: ready: first frame processed" for line in logged)
    assert not any(line[3:7].isdigit() for line in logged)
    assert proc.returncode == 0


def test_journal_formatter_keeps_the_priority_on_every_traceback_line():
    from agent.daemon.logs import make_formatter
    formatter = make_formatter(json_lines=False, journal=True)
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("agent.x", logging.ERROR, __file__, 1, "failed %s", ("here",),
                                   sys.exc_info())
    lines = formatter.format(record).split("\n")
    assert lines[0] == "<3>ERROR agent.x: failed here"
    assert len(lines) > 3 and all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


@pytest.mark.parametrize("journal_stream, expected", [("", False), ("1:2", False),
                                                      ("x:y", False), (None, True)])
def test_stderr_is_journal_only_when_device_and_inode_match(tmp_path, journal_stream, expected):
    from agent.daemon.logs import stderr_is_journal
    with open(str(tmp_path / "stderr"), "w") as stream:
        stat = os.fstat(stream.fileno())
        value = "%d:%d" % (stat.st_dev, stat.st_ino) if journal_stream is None else journal_stream
        assert stderr_is_journal({"JOURNAL_STREAM": value}, stream) is expected


def test_log_json_writes_one_object_per_line(tmp_path, sample_video):
    run = run_agent(["run", "--no-mqtt", "--source", "file://" + sample_video, "--state-dir",
                     str(tmp_path), "--max-frames", "3", "--log-json"])
    assert run.returncode == 0, run.stderr
    entries = [json.loads(line) for line in run.stderr_lines()]
    assert {"ts", "level", "logger", "msg"} <= set(entries[0])
    assert any(e["msg"] == "ready: first frame processed" for e in entries)
