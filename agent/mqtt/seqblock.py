"""seq blocks reserved ahead on disk, in a file beside the outbox (<outbox>.seq), so a crash never
hands out a seq twice, and a corrupt outbox that is moved aside does not take the counter with
it. The writer thread reserves the next block long before put() reaches the end of the current
one; a clean close records the exact next value, so a clean restart leaves no gap."""

import logging
import os
from typing import Optional

log = logging.getLogger(__name__)

BLOCK = 10000


class SeqReservation:
    def __init__(self, path: str) -> None:
        self.path = path
        self.reserved = self._read()      # highest seq reserved by an earlier run (0: none)

    def _read(self) -> int:
        try:
            with open(self.path) as handle:
                text = handle.read().strip()
        except OSError:
            return 0
        try:
            return max(0, int(text.split()[-1]))
        except (ValueError, IndexError):
            log.warning("outbox seq file %s unreadable (%r); seq continues from the outbox",
                        self.path, text[:40])
            return 0

    def reserve(self, upto: int) -> bool:
        """Record that every seq <= upto may have been handed out; atomic and fsync'd."""
        temp = self.path + ".tmp"
        try:
            with open(temp, "w") as handle:
                handle.write("reserved %d\n" % upto)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temp, self.path)
        except OSError as why:
            log.debug("outbox seq file %s: cannot reserve up to %d (%s)", self.path, upto, why)
            _remove(temp)
            return False
        self.reserved = upto
        return True

    def needs_more(self, next_seq: int, block: int = BLOCK) -> Optional[int]:
        """The new reservation to make when less than half a block is left, else None."""
        if next_seq + block // 2 > self.reserved:
            return next_seq + block - 1
        return None


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
