"""Whether the outbox can store results: the state health reports (ok / full / error), the
exact count of results that could not be stored, and the log lines: one "disk full" (or
"storage failing") line per STORAGE_LOG_INTERVAL_S while it lasts, one when it is over."""

import errno
import logging
import time
from typing import Optional, Set

log = logging.getLogger("agent.mqtt.outbox")

STORAGE_LOG_INTERVAL_S = 60.0
STORAGE_OK, STORAGE_FULL, STORAGE_ERROR = "ok", "full", "error"
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class StorageState:
    def __init__(self, path: str) -> None:
        self.path = path
        self.state = STORAGE_OK
        self.error = None             # type: Optional[str]
        self.unstored = 0             # results that could not be stored, since the start
        self._failing = set()         # type: Set[str]   "journal", "sqlite"
        self._logged_at = -STORAGE_LOG_INTERVAL_S

    def failed(self, part: str, why: Exception, what: str) -> None:
        full = getattr(why, "errno", None) in _FULL_ERRNOS or "full" in str(why).lower()
        self._failing.add(part)
        self.state = STORAGE_FULL if full else STORAGE_ERROR
        self.error = "%s: %s" % (what, why)
        now = time.monotonic()
        if now - self._logged_at >= STORAGE_LOG_INTERVAL_S:
            self._logged_at = now
            log.error("outbox %s: %s (%s); %d results not stored so far, committed results are "
                      "kept; retrying", self.path, "disk full" if full else "storage failing",
                      self.error, self.unstored)

    def worked(self, part: str) -> None:
        if part not in self._failing:
            return
        self._failing.discard(part)
        if self._failing:
            return
        log.warning("outbox %s: storing again after %s; %d results were not stored",
                    self.path, self.error, self.unstored)
        self.state, self.error = STORAGE_OK, None
        self._logged_at = -STORAGE_LOG_INTERVAL_S
