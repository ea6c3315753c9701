"""A durable outbox: results wait here (SQLite, WAL) until the broker acknowledged them.

Threads: `put()` (pipeline) only appends to a small RAM buffer under a short lock; a writer
thread commits the buffer and the acks every `commit_interval_ms` (sooner once `batch` of
either piled up). So the pipeline never waits for disk or network.

Power-loss guarantee: synchronous=FULL, so every commit is on disk when it returns; a power
cut or SIGKILL loses at most what was put in the last `commit_interval_ms` (the RAM buffer).
A crash after PUBACK but before the delete commits sends those messages again: subscribers
drop duplicates by `seq`.

`seq` is strictly increasing and survives restarts: the next value lives in the meta table,
committed with the rows that used the earlier ones. A seq that never reached the disk is
handed out again after a crash, which is safe: nothing with it was ever published.

Caps: beyond `max_messages` or `max_bytes` (payload bytes) the oldest messages are dropped
and counted exactly in `dropped` (persisted too). RAM holds at most the buffer, never the backlog.
"""

import collections
import logging
import sqlite3
import threading
import time
from typing import Callable, Deque, Iterable, List, NamedTuple, Optional, Set, Union

from ..errors import OutputError
from . import outbox_sql as sql

log = logging.getLogger(__name__)

Payload = Union[bytes, Callable[[int], bytes]]
DROP_LOG_INTERVAL_S = 60.0


class OutboxMessage(NamedTuple):
    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox:
    """Durable FIFO of MQTT messages keyed by seq; see the module doc for the guarantees."""

    def __init__(self, path: str, max_messages: int = 100000, max_bytes: int = 100 * 1024 * 1024,
                 commit_interval_ms: int = 200, batch: int = 1000) -> None:
        self.path = path
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._interval = commit_interval_ms / 1000.0
        self._batch = batch
        self._db = sql.open_db(path)          # the writer's connection
        self._db_lock = threading.Lock()
        self._reader = sql.open_db(path)      # pending(): WAL lets it read during an fsync
        self._reader_lock = threading.Lock()
        self._put_lock = threading.Lock()     # seq and payload making (producers)
        self._lock = threading.Lock()         # RAM state below; never held during disk I/O
        self._buf = collections.deque()       # type: Deque[tuple]
        self._buf_bytes = 0
        self._acks = set()                    # type: Set[int]
        self._committing = (0, 0, set())      # rows, bytes, acks taken by the running commit
        self._next_seq, self._dropped = self._meta("next_seq", 1), self._meta("dropped", 0)
        self._db_count, self._db_bytes, top = self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(seq), 0) "
            "FROM messages").fetchone()
        self._next_seq = max(self._next_seq, top + 1)
        self._drops_logged, self._drops_logged_at = self._dropped, -DROP_LOG_INTERVAL_S
        self.on_commit = None                 # type: Optional[Callable[[], None]]
        self._snapshots = 0                   # commits started; rows put before one are in it
        self._done = 0                        # the last snapshot that finished
        self._committed = threading.Condition(threading.Lock())
        self._wake = threading.Event()
        self._closing = False
        self._writer = threading.Thread(target=self._write_loop, name="outbox-writer", daemon=True)
        self._writer.start()

    # ---- producer side -------------------------------------------------------------
    def put(self, topic: str, payload: Payload, qos: int = 1) -> int:
        """Store a message; `payload` is bytes or make_payload(seq) -> bytes. Returns its seq."""
        with self._put_lock:      # producers only: the buffer stays in seq order
            if self._closing:
                raise OutputError("outbox %s is closed; results after shutdown are not kept" % self.path)
            seq = self._next_seq
            self._next_seq += 1
            data = payload(seq) if callable(payload) else payload
            if len(data) > self.max_bytes:
                self._count_drops(1)
                log.warning("outbox: message seq %d of %d bytes exceeds outbox.max_bytes=%d; dropped",
                            seq, len(data), self.max_bytes)
                return seq
            with self._lock:      # short: the writer and the sender wait on this one
                self._buf.append((seq, topic, data, qos, time.time()))
                self._buf_bytes += len(data)
                while len(self._buf) > self.max_messages or self._buf_bytes > self.max_bytes:
                    self._buf_bytes -= len(self._buf.popleft()[2])
                    self._dropped += 1
                full = len(self._buf) == self._batch     # wake the writer once per batch
        if full:
            self._wake.set()
        return seq

    def _count_drops(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    # ---- sender side ---------------------------------------------------------------
    def pending(self, limit: int, after_seq: int = 0) -> List[OutboxMessage]:
        """Up to `limit` committed, not yet acked messages with seq > after_seq, oldest first."""
        found = []                             # type: List[OutboxMessage]
        while len(found) < limit:
            acked, in_commit = self._acks, self._committing[2]   # acked, not deleted yet
            with self._reader_lock:
                rows = self._reader.execute(
                    "SELECT seq, topic, payload, qos FROM messages WHERE seq > ? ORDER BY seq "
                    "LIMIT ?", (after_seq, limit - len(found))).fetchall()
            if not rows:
                break
            after_seq = rows[-1][0]
            found.extend(OutboxMessage._make(r) for r in rows
                         if r[0] not in acked and r[0] not in in_commit)
        return found

    def ack(self, seq: int) -> None:
        """The broker has it: delete it at the next commit."""
        self.ack_many((seq,))

    def ack_many(self, seqs: Iterable[int]) -> None:
        with self._lock:
            before = len(self._acks)
            self._acks.update(seqs)
            many = before < self._batch <= len(self._acks)   # wake the writer once per batch
        if many:
            self._wake.set()

    # ---- counts --------------------------------------------------------------------
    @property
    def pending_count(self) -> int:
        """Messages stored and not acked (exact after each commit)."""
        with self._lock:
            rows, _, acks = self._committing
            return max(0, self._db_count + rows + len(self._buf) - len(self._acks) - len(acks))

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return self._db_bytes + self._committing[1] + self._buf_bytes

    @property
    def dropped(self) -> int:
        """Oldest messages dropped because of the caps, since the outbox was created."""
        return self._dropped

    @property
    def next_seq(self) -> int:
        return self._next_seq

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Commit everything put so far; True once it is on disk."""
        with self._lock:
            target = self._snapshots + 1
        if self._closing and not self._writer.is_alive():
            return True                        # close() committed everything
        self._wake.set()
        with self._committed:
            return self._committed.wait_for(lambda: self._done >= target, timeout_s)

    def close(self) -> None:
        """Commit what is buffered, stop the writer, close the database."""
        with self._put_lock:
            if self._closing:
                return
            self._closing = True
        self._wake.set()
        self._writer.join()
        with self._db_lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as why:
                log.warning("outbox %s: checkpoint at close failed: %s", self.path, why)
            self._db.close()
        with self._reader_lock:
            self._reader.close()

    # ---- writer thread -------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            self._wake.wait(self._interval)
            self._wake.clear()
            closing = self._closing
            try:
                snapshot, committed = self._commit()
            except Exception:  # noqa: BLE001 - a dead writer would silently stop all results
                log.exception("outbox %s: writer round failed; retrying", self.path)
                snapshot, committed = None, False
                time.sleep(self._interval)
            with self._committed:
                if snapshot is not None:   # a failed commit leaves flush() waiting
                    self._done = snapshot
                self._committed.notify_all()
            if committed and self.on_commit is not None:
                self.on_commit()
            if closing:
                return

    def _commit(self):
        """Write the buffer and the acks; returns (snapshot number or None if it failed,
        whether rows were added)."""
        with self._lock:
            self._snapshots += 1
            snapshot, rows, acks = self._snapshots, list(self._buf), self._acks
            if not rows and not acks:
                return snapshot, False
            self._buf, self._acks = collections.deque(), set()
            self._committing = (len(rows), self._buf_bytes, acks)
            self._buf_bytes = 0
        try:
            with self._db_lock:
                count, size, dropped = self._write(rows, acks)
        except sqlite3.Error as why:
            log.error("outbox %s: commit failed (%s); %d messages stay in memory and are retried",
                      self.path, why, len(rows))
            self._requeue(rows, acks)
            return None, False
        with self._lock:
            self._db_count, self._db_bytes = count, size
            self._dropped += dropped
            self._committing = (0, 0, set())
        self._report_drops()
        return snapshot, bool(rows)

    def _report_drops(self) -> None:
        """One warning a minute at most while the outbox overflows (long outages)."""
        now, total = time.monotonic(), self._dropped
        if total > self._drops_logged and now - self._drops_logged_at >= DROP_LOG_INTERVAL_S:
            log.warning("outbox full (outbox.max_messages=%d, outbox.max_bytes=%d): dropped %d "
                        "oldest results since the last report, %d in all", self.max_messages,
                        self.max_bytes, total - self._drops_logged, total)
            self._drops_logged, self._drops_logged_at = total, now

    def _write(self, rows: list, acks: Set[int]):
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT INTO messages VALUES (?, ?, ?, ?, ?)", rows)
            count = self._db_count + len(rows)
            size = self._db_bytes + sum(len(r[2]) for r in rows)
            gone, gone_bytes = sql.delete_acked(db, sorted(acks))
            count, size = count - gone, size - gone_bytes
            dropped, dropped_bytes = sql.drop_oldest(db, count, size, self.max_messages,
                                                     self.max_bytes)
            with self._lock:
                next_seq, total_dropped = self._next_seq, self._dropped + dropped
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("next_seq", next_seq), ("dropped", total_dropped)))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return count - dropped, size - dropped_bytes, dropped

    def _requeue(self, rows: list, acks: Set[int]) -> None:
        with self._lock:
            self._buf.extendleft(reversed(rows))
            self._buf_bytes += self._committing[1]
            self._acks |= acks
            self._committing = (0, 0, set())
            while len(self._buf) > self.max_messages or self._buf_bytes > self.max_bytes:
                self._buf_bytes -= len(self._buf.popleft()[2])
                self._dropped += 1

    def _meta(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default
