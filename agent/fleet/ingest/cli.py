"""`edgeagent ingest run` (consume into PostgreSQL) and `edgeagent ingest gaps` (what is missing)."""

import json
import logging
import os
import signal
import socket
import threading
import time
from typing import List

from ... import wire
from ...errors import ConfigError, OutputError

log = logging.getLogger(__name__)

DEFAULT_DSN = "postgresql:///edgeagent"


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="ingest_command", metavar="ACTION")
    run = sub.add_parser("run", help="consume results and health into PostgreSQL")
    _add_db(run)
    run.add_argument("--host", default="localhost", help="MQTT broker (default localhost)")
    run.add_argument("--port", type=int, default=1883)
    run.add_argument("--prefix", default=wire.DEFAULT_PREFIX)
    run.add_argument("--group", default="edgeagent-ingest",
                     help="shared-subscription group: consumers of one group split the messages")
    run.add_argument("--client-id", default="edgeagent-ingest-" + socket.gethostname(),
                     help="MQTT client id; keep it across restarts (the broker queues for it); "
                          "with --consumers N each gets -1..-N")
    run.add_argument("--consumers", type=int, default=1, help="connections in this process")
    run.add_argument("--batch", type=int, default=1000, help="rows per INSERT at most")
    run.add_argument("--receive-maximum", type=int, default=1000,
                     help="unacknowledged messages the broker may send each consumer")
    run.add_argument("--session-expiry", type=int, default=7 * 24 * 3600, metavar="S",
                     help="seconds the broker keeps a stopped consumer's queue (default 7 days)")
    run.add_argument("--username")
    run.add_argument("--password-file", help="file holding the MQTT password (chmod 600)")
    run.add_argument("--ca-file", help="CA certificate: connect with TLS")
    run.add_argument("--report-every", type=float, default=10.0, metavar="S",
                     help="seconds between progress lines on stderr")
    gaps = sub.add_parser("gaps", help="per device: rows, seq range and the missing seqs")
    _add_db(gaps)
    gaps.add_argument("--device", help="only this device id")
    gaps.add_argument("--json", action="store_true", help="machine-readable output")


def _add_db(parser) -> None:
    parser.add_argument("--dsn", default=os.environ.get("EDGEAGENT_INGEST_DSN", DEFAULT_DSN),
                        help="PostgreSQL connection string (default $EDGEAGENT_INGEST_DSN or %s)"
                             % DEFAULT_DSN)
    parser.add_argument("--schema", default="edgeagent", help="PostgreSQL schema of the tables")


def run(args) -> int:
    from ...daemon.logs import setup_logging
    setup_logging("info")
    if args.ingest_command == "gaps":
        return cmd_gaps(args)
    if args.ingest_command == "run":
        return cmd_run(args)
    raise ConfigError("say what to do: edgeagent ingest run | gaps (see --help)")


def cmd_run(args) -> int:
    from .consumer import Consumer, ConsumerSettings, run_consumers
    from .store import Store
    if args.consumers < 1 or args.batch < 1 or args.receive_maximum < 1:
        raise ConfigError("--consumers, --batch and --receive-maximum must be at least 1")
    if args.report_every <= 0 or args.session_expiry < 0:
        raise ConfigError("--report-every must be above 0 seconds and --session-expiry 0 or more "
                          "(got %s, %s)" % (args.report_every, args.session_expiry))
    password = _password(args.password_file)
    names = [args.client_id] if args.consumers == 1 else [
        "%s-%d" % (args.client_id, i) for i in range(1, args.consumers + 1)]
    consumers = [Consumer(ConsumerSettings(
        host=args.host, port=args.port, prefix=args.prefix, group=args.group, client_id=name,
        session_expiry_s=args.session_expiry, receive_maximum=args.receive_maximum,
        batch=args.batch, username=args.username, password=password, ca_file=args.ca_file),
        Store(args.dsn, args.schema, name)) for name in names]
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    progress = Progress()
    try:
        run_consumers(consumers, stop, progress.report, args.report_every)
    finally:
        if any(c.started for c in consumers):   # a failed start prints its one line only
            print(json.dumps(summary(consumers)), flush=True)
    return 0


class Progress:
    """One line per interval: rows in, rate, duplicates ignored, rejected."""

    def __init__(self) -> None:
        self.last = (time.monotonic(), 0)

    def report(self, consumers) -> None:
        total = summary(consumers)["total"]
        now = time.monotonic()
        rate = (total["inserted"] - self.last[1]) / max(now - self.last[0], 1e-6)
        self.last = (now, total["inserted"])
        log.info("ingest: %d rows (%.0f/s), %d duplicates ignored, %d rejected, %d consumers",
                 total["inserted"], rate, total["duplicates"], total["rejected"], len(consumers))


def summary(consumers) -> dict:
    per = [dict(c.counters.as_dict(), client_id=c.settings.client_id) for c in consumers]
    total = {k: sum(p[k] for p in per) for k in ("received", "inserted", "duplicates", "rejected")}
    return {"consumers": per, "total": total}


def cmd_gaps(args) -> int:
    from .store import Store, safe_dsn
    store = Store(args.dsn, args.schema).connect()
    try:
        report = store.gaps(args.device)
    except store.psycopg.errors.UndefinedTable:
        raise OutputError("no table %s.results in %s: run `edgeagent ingest run` "
                          "first, or pass --schema" % (args.schema, safe_dsn(args.dsn)))
    finally:
        store.close()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_gaps(report))
    return 0


def format_gaps(report: List[dict]) -> str:
    if not report:
        return "no results stored yet"
    lines = ["%-20s %10s %12s %12s %9s  %s" % ("device", "rows", "first_seq", "last_seq",
                                               "missing", "gaps")]
    for r in report:
        shown = ", ".join(str(a) if a == b else "%d-%d" % (a, b) for a, b in r["gaps"][:10])
        if len(r["gaps"]) > 10:
            shown += ", ... (%d ranges)" % len(r["gaps"])
        lines.append("%-20s %10d %12d %12d %9d  %s" % (r["device_id"], r["rows"], r["first_seq"],
                                                       r["last_seq"], r["missing"], shown or "-"))
    return "\n".join(lines)


def _password(path):
    if path is None:
        return None
    try:
        mode = os.stat(path).st_mode
        if mode & 0o077:
            raise ConfigError("--password-file %s is readable by group or others: "
                              "chmod 600 %s" % (path, path))
        with open(path) as handle:
            return handle.read().strip()
    except OSError as why:
        raise ConfigError("--password-file %s: %s" % (path, why.strerror))
