"""The outbox's rows that are journaled but not in SQLite: in seq order, published from here at
once. Not thread-safe: the outbox holds its lock around every call.

Invariant the sender relies on: every stored, unacknowledged row with a seq below the first one
here is in SQLite (rows leave from the front into SQLite, or anywhere once acknowledged)."""

import bisect
import time
from typing import List, Optional, Set, Tuple

MIGRATE_AFTER_S = 2.0     # unacknowledged this long (broker down or slow): into SQLite
RAM_ROWS = 20000          # rows kept here at most (a burst the broker lags on) ...
RAM_BYTES = 8 * 1024 * 1024   # ... and payload bytes; older ones go on into SQLite

Row = tuple               # (seq, topic, payload, qos, created)


class RamRows:
    def __init__(self) -> None:
        self.rows = []            # type: List[Row]
        self.seqs = []            # type: List[int]
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.rows)

    def append(self, row: Row) -> None:
        self.rows.append(row)
        self.seqs.append(row[0])
        self.bytes += len(row[2])

    def drop_oldest_beyond(self, max_messages: int, max_bytes: int) -> int:
        """The caps, while SQLite cannot take rows: drop from the front; how many went."""
        dropped = 0
        while len(self.rows) > max_messages or self.bytes > max_bytes:
            self.bytes -= len(self.rows.pop(0)[2])
            self.seqs.pop(0)
            dropped += 1
        return dropped

    def after(self, after_seq: int, limit: int) -> Tuple[List[Row], Optional[int]]:
        """Up to `limit` rows with seq > after_seq, and the first seq held (None: empty)."""
        start = bisect.bisect_right(self.seqs, after_seq)
        return self.rows[start:start + limit], (self.seqs[0] if self.seqs else None)

    def resolve(self, acks: Set[int]) -> Set[int]:
        """Forget acknowledged rows; their seqs."""
        if not acks or not self.rows:
            return set()
        gone = {r[0] for r in self.rows if r[0] in acks}
        if gone:
            self.rows = [r for r in self.rows if r[0] not in gone]
            self.seqs = [r[0] for r in self.rows]
            self.bytes = sum(len(r[2]) for r in self.rows)
        return gone

    def to_migrate(self, everything: bool) -> List[Row]:
        """The oldest rows that go into SQLite now: all when closing or flushing, else those
        unacknowledged for MIGRATE_AFTER_S or beyond RAM_ROWS / RAM_BYTES."""
        rows = self.rows
        if everything:
            return list(rows)
        old, count = time.time() - MIGRATE_AFTER_S, max(0, len(rows) - RAM_ROWS)
        extra = self.bytes - RAM_BYTES - sum(len(r[2]) for r in rows[:count])
        while count < len(rows) and (rows[count][4] < old or extra > 0):
            extra -= len(rows[count][2])
            count += 1
        return rows[:count]

    def migrated(self, moved: List[Row]) -> None:
        """The front rows `moved` are in SQLite now."""
        del self.rows[:len(moved)]
        del self.seqs[:len(moved)]
        self.bytes -= sum(len(r[2]) for r in moved)

    def resolved_upto(self, next_seq: int) -> int:
        """Every row with a seq up to this is acknowledged or in SQLite."""
        return self.seqs[0] - 1 if self.seqs else next_seq - 1
