"""A durable outbox: results wait here until the broker acknowledged them. docs/outbox.md.

put() (pipeline thread) writes the result to the journal (one write(), no fsync: the kernel has
it, so a SIGKILL cannot lose it) and keeps it in RAM, where the sender can publish it at once.
A writer thread, every `commit_interval_ms`: fsyncs the journal (so a power cut loses at most
that much of what had not reached the broker, with one fsync per interval for the SD card),
forgets rows the broker acknowledged, moves rows unacknowledged for 2 s (ramrows.py: a broker
that is down or slow) into SQLite (WAL, synchronous=FULL) with the deletes of acked SQLite rows,
and deletes journal files whose rows are all resolved. A broker that keeps up thus costs no
SQLite write at all. flush() and close() move everything into SQLite.

`seq` is per device, strictly increasing, never reused: blocks are reserved ahead on disk
(seqblock.py). Every payload also carries the process's boot_id; subscribers dedupe on
(device_id, boot_id, seq). After a crash, results sent but not yet resolved are sent again.

A full disk: a result whose journal write fails is not stored; it is counted exactly in
`unstored`, `storage` says "full" (health: degraded), "disk full" is logged once a minute
(storage.py), and storing resumes by itself when a write succeeds again.

Caps: beyond `max_messages` or `max_bytes` (payload bytes) the oldest messages are dropped
and counted exactly in `dropped` (persisted too).
"""

import logging
import sqlite3
import threading
import time
from typing import Callable, Iterable, List, NamedTuple, Optional, Set, Union

from ..errors import OutputError
from . import journal as jr
from . import outbox_sql as sql
from .ramrows import RamRows
from .seqblock import SeqReservation
from .outbox_writer import DROP_LOG_INTERVAL_S, WriterRounds
from .storage import StorageState

log = logging.getLogger(__name__)

Payload = Union[bytes, Callable[[int], bytes]]


class OutboxMessage(NamedTuple):
    seq: int
    topic: str
    payload: bytes
    qos: int


class Outbox(WriterRounds):
    """Durable FIFO of MQTT messages keyed by seq; see the module doc for the guarantees."""

    def __init__(self, path: str, max_messages: int = 100000, max_bytes: int = 100 * 1024 * 1024,
                 commit_interval_ms: int = 200, batch: int = 1000) -> None:
        self.path = path
        self.max_messages, self.max_bytes = max_messages, max_bytes
        self._interval = commit_interval_ms / 1000.0
        self._batch = batch
        self._db, self.recovered = sql.open_checked(path)     # the writer's connection
        self._db_lock = threading.Lock()
        self._reader = sql.open_db(path)      # pending(): WAL lets it read during an fsync
        self._reader_lock = threading.Lock()
        self._put_lock = threading.Lock()     # seq, payload making and the journal (producers)
        self._lock = threading.Lock()         # RAM state below; never held during disk I/O
        self._unsaved = RamRows()             # journaled, not in SQLite yet
        self._acks = set()                    # type: Set[int]
        self._in_commit = False
        self._resolved = set()                # type: Set[int]   acked rows dropped from RAM
        self._flush_all = 0                   # a flush() wants every row in SQLite
        self._journal = jr.Journal(path)
        self._seqs = SeqReservation(path + ".seq")
        self._dropped = self._meta("dropped", 0)
        self._committed_seq = self._meta("committed_seq", 0)
        self._db_count, self._db_bytes, top = self._totals()
        self._next_seq = max(self._meta("next_seq", 1), top + 1, self._seqs.reserved + 1)
        self._storage = StorageState(path)
        self._replay()
        self._seqs.reserve(self._next_seq + self._block() - 1)
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
    def put(self, topic: str, payload: Payload, qos: int = 1) -> Optional[int]:
        """Store a message; `payload` is bytes or make_payload(seq) -> bytes. Returns its seq
        once it is journaled (safe from SIGKILL), or None when it could not be stored."""
        with self._put_lock:      # producers only: the journal and RAM stay in seq order
            if self._closing:
                raise OutputError("outbox %s is closed; results after shutdown are not kept" % self.path)
            seq = self._next_seq
            self._next_seq += 1
            data = payload(seq) if callable(payload) else payload
            if len(data) > self.max_bytes:
                self._count_drops(1)
                log.warning("outbox: message seq %d of %d bytes exceeds outbox.max_bytes=%d; dropped",
                            seq, len(data), self.max_bytes)
                return None
            row = (seq, topic, data, qos, time.time())
            try:
                self._journal.append(jr.encode(row), seq)
            except OSError as why:
                self._storage.unstored += 1
                self._storage.failed("journal", why, "journal write")
                return None
            self._storage.worked("journal")
            with self._lock:      # short: the writer and the sender wait on this one
                self._append_unsaved(row)
                full = len(self._unsaved) == self._batch     # wake the writer once per batch
        if full:
            self._wake.set()
        return seq

    def _append_unsaved(self, row: tuple) -> None:
        self._unsaved.append(row)
        if not self._in_commit:   # the commit applies the caps; never drop rows it writes
            self._dropped += self._unsaved.drop_oldest_beyond(self.max_messages, self.max_bytes)

    def _count_drops(self, n: int) -> None:
        with self._lock:
            self._dropped += n

    # ---- sender side ---------------------------------------------------------------
    def pending(self, limit: int, after_seq: int = 0) -> List[OutboxMessage]:
        """Up to `limit` stored, not yet acked messages with seq > after_seq, oldest first:
        committed rows from SQLite, then journaled rows from RAM (no waiting for the commit)."""
        found = []                             # type: List[OutboxMessage]
        with self._lock:      # rows older than the oldest in RAM are all in SQLite
            in_ram, low = self._unsaved.after(after_seq, limit + len(self._acks))
        acked = self._acks
        while len(found) < limit and (low is None or after_seq + 1 < low):
            with self._reader_lock:
                rows = self._reader.execute(
                    "SELECT seq, topic, payload, qos FROM messages WHERE seq > ? AND seq < ? "
                    "ORDER BY seq LIMIT ?", (after_seq, low or (1 << 62), limit - len(found))
                ).fetchall()
            if not rows:
                break
            after_seq = rows[-1][0]
            found.extend(OutboxMessage._make(r) for r in rows if r[0] not in acked)
        for row in in_ram:
            if len(found) >= limit:
                break
            if row[0] not in acked:
                found.append(OutboxMessage(row[0], row[1], row[2], row[3]))
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
            return max(0, self._db_count + len(self._unsaved) - len(self._acks))

    @property
    def pending_bytes(self) -> int:
        with self._lock:
            return self._db_bytes + self._unsaved.bytes

    @property
    def dropped(self) -> int:
        """Oldest messages dropped because of the caps, since the outbox was created."""
        return self._dropped

    @property
    def next_seq(self) -> int:
        return self._next_seq

    @property
    def unstored(self) -> int:
        """Results that could not be stored at all (full disk, I/O errors) since the start."""
        return self._storage.unstored

    @property
    def storage(self) -> str:
        """"ok", "full" or "error" (health: degraded unless ok)."""
        return self._storage.state

    @property
    def storage_error(self) -> Optional[str]:
        return self._storage.error

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Commit everything put so far into SQLite; True once it is there (fsync'd)."""
        with self._lock:
            target = self._snapshots + 1
            self._flush_all = target
        if self._closing and not self._writer.is_alive():
            return not len(self._unsaved)
        self._wake.set()
        with self._committed:
            return self._committed.wait_for(lambda: self._done >= target, timeout_s)

    def close(self) -> None:
        """Commit what is journaled, stop the writer, record the exact next seq, close."""
        with self._put_lock:
            if self._closing:
                return
            self._closing = True
        self._wake.set()
        self._writer.join()
        left = len(self._unsaved)
        if left:
            log.error("outbox %s: %d results could not be committed at stop (%s); they stay in "
                      "the journal and are stored at the next start", self.path, left,
                      self._storage.error)
        self._journal.close(remove_current=not left)
        self._seqs.reserve(self._next_seq - 1)
        with self._db_lock:
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as why:
                log.warning("outbox %s: checkpoint at close failed: %s", self.path, why)
            self._db.close()
        with self._reader_lock:
            self._reader.close()

    # ---- opening -----------------------------------------------------------------------
    def _replay(self) -> None:
        """Journal files an earlier run left (SIGKILL, power cut, full disk): their rows that
        SQLite lacks go into RAM and are committed by the first writer round."""
        rows, numbers = self._journal.replay()
        fresh = [r for r in rows if r[0] > self._committed_seq]
        if not fresh:
            self._journal.remove_sealed(numbers)     # all of it was committed before
        else:
            self._journal.sealed = [(number, rows[-1][0]) for number in numbers]
        for row in fresh:
            self._append_unsaved(row)
        if rows:
            self._next_seq = max(self._next_seq, rows[-1][0] + 1)
        if fresh:
            log.info("outbox %s: %d results recovered from the journal (seq %d..%d)", self.path,
                     len(fresh), fresh[0][0], fresh[-1][0])

    def _totals(self):
        return self._db.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(seq), 0) "
            "FROM messages").fetchone()

    def _meta(self, key: str, default: int) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default
