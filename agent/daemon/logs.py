"""Logging set-up: timestamps on a terminal or in a file, plain lines for journald (it stamps
time itself), one JSON object per line with --log-json.

When stderr is the journal ($JOURNAL_STREAM names its device and inode), every line starts with
the syslog priority as "<3>" so `journalctl -p err` works; journald strips the prefix. A
traceback keeps that priority on each of its lines instead of falling back to "info"."""

import json
import logging
import os
import sys
import threading

from ..wire import utc_iso

PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
            logging.CRITICAL: 2}
PLAIN = "%(levelname)s %(name)s: %(message)s"
STAMPED = "%(asctime)s " + PLAIN


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {"ts": utc_iso(record.created), "level": record.levelname.lower(),
                 "logger": record.name, "msg": record.getMessage()}
        if record.threadName != threading.main_thread().name:
            entry["thread"] = record.threadName
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


class JournalPriority(logging.Formatter):
    """Wraps another formatter: "<N>" (the syslog priority) in front of every line."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = "<%d>" % PRIORITY.get(record.levelno, 6 if record.levelno < 30 else 3)
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def stderr_is_journal(environ=os.environ, stream=None) -> bool:
    """True when stderr is connected to journald, as sd_journal_stream_fd(3) documents:
    $JOURNAL_STREAM is "<device>:<inode>" of that stream."""
    value = environ.get("JOURNAL_STREAM", "")
    stream = sys.stderr if stream is None else stream
    try:
        device, inode = (int(part) for part in value.split(":"))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def make_formatter(json_lines: bool, journal: bool) -> logging.Formatter:
    inner = JsonFormatter() if json_lines else logging.Formatter(PLAIN if journal else STAMPED)
    return JournalPriority(inner) if journal else inner


def setup_logging(level: str = "info", json_lines: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(make_formatter(json_lines, stderr_is_journal()))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper()))
