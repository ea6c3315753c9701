"""The SQL of the outbox: open in WAL mode, delete acked rows, drop the oldest beyond the caps.

Every function runs inside the writer's transaction and returns exact (rows, bytes) counts.
"""

import os
import sqlite3
from typing import List, Tuple

from ..errors import OutputError

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS messages (seq INTEGER PRIMARY KEY, topic TEXT NOT NULL, "
    "payload BLOB NOT NULL, qos INTEGER NOT NULL, created REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
)
CHUNK = 500   # seqs per `IN (...)`: below SQLite's 999 parameter limit on old builds


def open_db(path: str) -> sqlite3.Connection:
    """A connection in WAL mode with synchronous=FULL (a commit is on disk when it returns)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutputError("outbox %s: SQLite refused WAL mode (got %s); put outbox.path on a "
                              "local file system" % (path, mode))
        db.execute("PRAGMA synchronous=FULL")
        for statement in SCHEMA:
            db.execute(statement)
        return db
    except (sqlite3.Error, OSError) as why:
        raise OutputError("outbox %s: cannot open: %s; check outbox.path and its permissions" % (
            path, why))


def delete_acked(db: sqlite3.Connection, seqs: List[int]) -> Tuple[int, int]:
    """Delete acked rows; returns (rows, bytes) really deleted (a cap may have taken some)."""
    gone = gone_bytes = 0
    for i in range(0, len(seqs), CHUNK):
        chunk = seqs[i:i + CHUNK]
        marks = ",".join("?" * len(chunk))
        n, size = db.execute("SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0) FROM messages "
                             "WHERE seq IN (%s)" % marks, chunk).fetchone()
        db.execute("DELETE FROM messages WHERE seq IN (%s)" % marks, chunk)
        gone, gone_bytes = gone + n, gone_bytes + size
    return gone, gone_bytes


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
