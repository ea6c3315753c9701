"""The SQL of the outbox: open in WAL mode (checked, and moved aside when corrupt or of a future
schema), delete acked rows, drop the oldest beyond the caps.

The delete/drop functions run inside the writer's transaction and return exact (rows, bytes).
The file's schema version is PRAGMA user_version (SCHEMA_VERSION); a file from before versions
(0) with the same tables is adopted as version 1.
"""

import datetime
import logging
import os
import sqlite3
from typing import List, Optional, Tuple

from ..errors import OutputError

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
COLUMNS = ("seq", "topic", "payload", "qos", "created")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
    "payload BLOB NOT NULL, qos INTEGER NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)


class Corrupt(Exception):
    """The outbox file is not a usable outbox of this version; the text says why."""


def open_checked(path: str) -> Tuple[sqlite3.Connection, Optional[dict]]:
    """The writer's connection. A corrupt, truncated or future-schema file is moved aside to
    <path>.corrupt-<UTC time> (with its -wal) and a fresh outbox is created; the second value
    then says what happened: {"reason", "moved_to", "ts"}; else None."""
    if os.path.exists(path):
        try:
            return _check(open_db(path), path), None
        except Corrupt as why:
            moved = move_aside(path, str(why))
            return _check(open_db(path), path), moved
    return _check(open_db(path), path), None


def _check(db: sqlite3.Connection, path: str) -> sqlite3.Connection:
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise Corrupt("schema version %d is newer than this agent's %d (a downgrade?)" % (
                version, SCHEMA_VERSION))
        verdict = db.execute("PRAGMA quick_check(1)").fetchone()[0]
        if verdict != "ok":
            raise Corrupt("integrity check failed: %s" % verdict)
        columns = tuple(row[1] for row in db.execute("PRAGMA table_info(messages)"))
        if columns != COLUMNS:
            raise Corrupt("table messages has columns %s, expected %s" % (columns, COLUMNS))
        if version < SCHEMA_VERSION:
            db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)
        return db
    except Corrupt:
        db.close()
        raise
    except sqlite3.OperationalError as why:
        db.close()
        raise OutputError("outbox %s: cannot read it: %s; check outbox.path, its permissions and "
                          "free space" % (path, why))
    except sqlite3.DatabaseError as why:   # SQLITE_CORRUPT, SQLITE_NOTADB
        db.close()
        raise Corrupt(str(why))


def move_aside(path: str, reason: str) -> dict:
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    target, n = "%s.corrupt-%s" % (path, stamp), 1
    while os.path.exists(target):
        n += 1
        target = "%s.corrupt-%s-%d" % (path, stamp, n)
    for suffix in ("", "-wal"):
        if os.path.exists(path + suffix):
            os.replace(path + suffix, target + suffix)
    try:
        os.unlink(path + "-shm")
    except OSError:
        pass
    log.error("outbox %s was unusable (%s); moved aside to %s for inspection and started a fresh "
              "outbox (seq continues from %s.seq)", path, reason, target, path)
    return {"reason": reason, "moved_to": target,
            "ts": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def open_db(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with synchronous=FULL (a commit is on disk when it returns)."""
    db = None
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutputError("outbox %s: SQLite refused WAL mode (got %s); put outbox.path on a "
                              "local file system" % (path, mode))
        db.execute("PRAGMA synchronous=FULL")
        # a small WAL: checkpointed every ~400 KB and cut back after, so a small state
        # partition is not eaten by a WAL of old pages
        db.execute("PRAGMA wal_autocheckpoint=100")
        db.execute("PRAGMA journal_size_limit=%d" % (1024 * 1024))
        db.execute("PRAGMA cache_size=-512")     # KiB: rows are read once, in order
        for statement in SCHEMA:
            db.execute(statement)
        return db
    except sqlite3.DatabaseError as why:
        if db is not None:
            db.close()
        if not isinstance(why, sqlite3.OperationalError):
            raise Corrupt(str(why))
        raise OutputError("outbox %s: cannot open: %s; check outbox.path and its permissions" % (
            path, why))
    except (sqlite3.Error, OSError) as why:
        raise OutputError("outbox %s: cannot open: %s; check outbox.path and its permissions" % (
            path, why))


def rollback(db: sqlite3.Connection) -> None:
    """Undo the open transaction, if SQLite has not already (it does on SQLITE_FULL): never let
    "no transaction is active" hide the real error."""
    if db.in_transaction:
        try:
            db.execute("ROLLBACK")
        except sqlite3.Error as why:
            log.debug("outbox: rollback failed: %s", why)


def delete_acked(db: sqlite3.Connection, seqs: List[int]) -> Tuple[int, int]:
    """Delete acked rows (seqs sorted); returns (rows, bytes) really deleted (a cap may have
    taken some). PUBACKs come in order, so the seqs are mostly a few contiguous runs: one
    range statement per run, not one bound parameter per row."""
    gone = gone_bytes = 0
    for first, last in _runs(seqs):
        n, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages "
                             "WHERE seq BETWEEN ? AND ?", (first, last)).fetchone()
        if n:
            db.execute("DELETE FROM messages WHERE seq BETWEEN ? AND ?", (first, last))
        gone, gone_bytes = gone + n, gone_bytes + size
    return gone, gone_bytes


def _runs(seqs: List[int]) -> List[Tuple[int, int]]:
    runs = []            # type: List[Tuple[int, int]]
    for seq in seqs:
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        elif not runs or seq != runs[-1][1]:
            runs.append((seq, seq))
    return runs


def drop_oldest(db: sqlite3.Connection, count: int, size: int, max_messages: int,
                max_bytes: int) -> Tuple[int, int]:
    """Delete the oldest rows beyond the caps; returns (rows, bytes) deleted."""
    cut = 0
    if count > max_messages:
        cut = db.execute("SELECT seq FROM messages ORDER BY seq LIMIT 1 OFFSET ?",
                         (count - max_messages - 1,)).fetchone()[0]
    if size > max_bytes:
        cut = max(cut, _byte_cut(db, size - max_bytes))
    if not cut:
        return 0, 0
    gone, gone_bytes = db.execute(
        "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages WHERE seq <= ?",
        (cut,)).fetchone()
    db.execute("DELETE FROM messages WHERE seq <= ?", (cut,))
    return gone, gone_bytes


def _byte_cut(db: sqlite3.Connection, excess: int) -> int:
    """The seq up to which the oldest rows free at least `excess` payload bytes."""
    freed, after = 0, 0
    while True:
        rows = db.execute("SELECT seq, LENGTH(payload) FROM messages WHERE seq > ? "
                          "ORDER BY seq LIMIT 1000", (after,)).fetchall()
        if not rows:
            return after
        for seq, length in rows:
            freed += length
            if freed >= excess:
                return seq
        after = rows[-1][0]
