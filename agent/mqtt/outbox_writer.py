"""The outbox's writer thread: one round every commit_interval_ms (outbox.py's module doc).

A round fsyncs the journal, forgets rows the broker acknowledged, moves rows unacknowledged for
a while into SQLite with the deletes of acked SQLite rows, and deletes resolved journal files.
WriterRounds is a base of Outbox, not an object of its own: a round works on the outbox's RAM
state under the outbox's locks (_put_lock, _lock, _db_lock), and splitting that state in two
would need a second set of locks between them."""

import logging
import sqlite3
import time
from typing import List

from . import outbox_sql as sql

log = logging.getLogger("agent.mqtt.outbox")

DROP_LOG_INTERVAL_S = 60.0


class WriterRounds:
    """The writer thread's half of Outbox; Outbox.__init__ sets every attribute used here."""

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
                with self._lock:
                    self._in_commit = False
            if snapshot is None and not closing:
                time.sleep(self._interval)
            with self._committed:
                if snapshot is not None:   # a failed commit leaves flush() waiting
                    self._done = snapshot
                self._committed.notify_all()
            if committed and self.on_commit is not None:
                self.on_commit()
            self._reserve_ahead()
            if closing:
                return

    def _commit(self):
        """One writer round: make the journal durable (fsync), drop acked rows from RAM, move
        rows unacknowledged for a while into SQLite with the acks of rows there, then
        delete journal files whose rows are all resolved. (snapshot number or None if storage
        failed, whether rows went into SQLite)."""
        with self._put_lock:      # no record is half-way into the journal while it rotates
            with self._lock:
                self._snapshots += 1
                snapshot, acks = self._snapshots, set(self._acks)
                everything = self._closing or self._flush_all >= snapshot
                self._resolved = self._unsaved.resolve(acks)
                self._acks -= self._resolved
                moving = self._unsaved.to_migrate(everything)
                self._in_commit = True
                next_seq = self._next_seq
            self._journal.rotate()
        try:
            try:
                self._journal.sync_sealed()
            except OSError as why:
                raise sqlite3.OperationalError("journal fsync: %s" % why)
            db_acks = sorted(a for a in acks if a not in self._resolved)
            if moving or db_acks:
                with self._db_lock:
                    total, size, dropped = self._write(moving, db_acks, next_seq)
            else:
                total, size, dropped = self._db_count, self._db_bytes, 0
        except sqlite3.Error as why:
            with self._lock:
                self._in_commit = False
                self._acks |= set(a for a in acks if a not in self._resolved)
            self._storage.failed("sqlite", why, "commit of %d results" % len(moving))
            return None, False
        with self._lock:
            self._in_commit = False
            self._acks -= acks
            self._unsaved.migrated(moving)
            self._db_count, self._db_bytes = total, size
            self._dropped += dropped
            resolved_upto = self._unsaved.resolved_upto(next_seq)
        self._resolved = set()
        with self._put_lock:
            self._journal.remove_upto(resolved_upto)
        self._storage.worked("sqlite")
        self._report_drops()
        return snapshot, bool(moving)

    def _write(self, rows: list, db_acks: List[int], next_seq: int):
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            added = db.executemany("INSERT OR IGNORE INTO messages VALUES (?, ?, ?, ?, ?)",
                                   rows).rowcount if rows else 0
            count = self._db_count + max(0, added)
            size = self._db_bytes + sum(len(r[2]) for r in rows)
            gone, gone_bytes = sql.delete_acked(db, db_acks)
            count, size = count - gone, size - gone_bytes
            dropped, dropped_bytes = sql.drop_oldest(db, count, size, self.max_messages,
                                                     self.max_bytes)
            with self._lock:
                total_dropped = self._dropped + dropped
            committed = max([self._committed_seq] + [r[0] for r in rows])
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           (("next_seq", next_seq), ("dropped", total_dropped),
                            ("committed_seq", committed)))
            db.execute("COMMIT")
        except BaseException:
            sql.rollback(db)
            raise
        self._committed_seq = committed
        return count - dropped, size - dropped_bytes, dropped

    def _reserve_ahead(self) -> None:
        upto = self._seqs.needs_more(self._next_seq, self._block())
        if upto is not None:
            self._seqs.reserve(upto)

    def _block(self) -> int:
        return max(1000, min(100000, self._batch * 10))

    def _report_drops(self) -> None:
        """One warning a minute at most while the outbox overflows (long outages)."""
        now, total = time.monotonic(), self._dropped
        if total > self._drops_logged and now - self._drops_logged_at >= DROP_LOG_INTERVAL_S:
            log.warning("outbox full (outbox.max_messages=%d, outbox.max_bytes=%d): dropped %d "
                        "oldest results since the last report, %d in all", self.max_messages,
                        self.max_bytes, total - self._drops_logged, total)
            self._drops_logged, self._drops_logged_at = total, now
