"""The outbox's append-only journal: each result is written here (one write(), no fsync) before
put() returns, so a SIGKILL cannot take it: the kernel already has the bytes. The writer thread
later fsyncs it (batched), moves rows the broker has not acknowledged for a while into SQLite,
and deletes a journal file once each of its rows is acknowledged or in SQLite; a restart
replays whatever journal files are left.

Files: <outbox>.journal-<n>, n increasing; the newest one is open for appending. A record:
    u32 body length | u32 crc32(body) | body = i64 seq, u8 qos, f64 created, u16 topic length,
    topic (UTF-8), payload
The writer fsyncs sealed files once per commit interval: that, not SQLite, is what bounds a
power cut's loss; rows still unacknowledged after a while move on into SQLite (the backlog),
so a broker that keeps up costs no SQLite writes at all.
A power cut can leave a torn or zeroed tail: replay stops at the first record that does not
check out and says how many bytes it ignored (those results were never fsync'd: within the
power-cut guarantee of commit_interval_ms).
"""

import glob
import logging
import os
import re
import struct
import zlib
from typing import List, Optional, Tuple

log = logging.getLogger(__name__)

_HEAD = struct.Struct("<II")
_BODY = struct.Struct("<qBdH")
_MAX_RECORD = 512 * 1024 * 1024
Row = Tuple[int, str, bytes, int, float]      # seq, topic, payload, qos, created


def encode(row: Row) -> bytes:
    seq, topic, payload, qos, created = row
    name = topic.encode("utf-8")
    body = _BODY.pack(seq, qos, created, len(name)) + name + payload
    return _HEAD.pack(len(body), zlib.crc32(body) & 0xFFFFFFFF) + body


def decode_all(data: bytes) -> Tuple[List[Row], int]:
    """The records of one journal file and the number of trailing bytes that did not check out."""
    rows, at = [], 0
    while at + _HEAD.size <= len(data):
        size, crc = _HEAD.unpack_from(data, at)
        body = data[at + _HEAD.size:at + _HEAD.size + size]
        if size < _BODY.size or size > _MAX_RECORD or len(body) != size or \
                zlib.crc32(body) & 0xFFFFFFFF != crc:
            break
        seq, qos, created, name_len = _BODY.unpack_from(body, 0)
        start = _BODY.size
        topic = body[start:start + name_len].decode("utf-8", "replace")
        rows.append((seq, topic, bytes(body[start + name_len:]), qos, created))
        at += _HEAD.size + size
    return rows, len(data) - at


class Journal:
    """Appends records to the newest journal file; rotate() starts the next file. Not
    thread-safe: the outbox calls append() and rotate() under its producer lock."""

    def __init__(self, outbox_path: str) -> None:
        self._base = outbox_path + ".journal-"
        self._number = max(self.numbers() or [0])
        self._fd = None              # type: Optional[int]
        self._size = 0
        self._hi = 0                 # highest seq in the current file
        self._unsynced = []          # type: List[int]   fds of sealed files not fsync'd yet
        self._new_files = False      # a file was created since the last sync (its dir entry)
        self.sealed = []             # type: List[Tuple[int, int]]  (file number, highest seq)

    def numbers(self) -> List[int]:
        found = []
        for path in glob.glob(glob.escape(self._base) + "*"):
            match = re.match(r"^(\d+)$", path[len(self._base):])
            if match:
                found.append(int(match.group(1)))
        return sorted(found)

    def path(self, number: int) -> str:
        return "%s%d" % (self._base, number)

    def replay(self) -> Tuple[List[Row], List[int]]:
        """Rows of every journal file left by an earlier run, and those files' numbers."""
        rows, numbers = [], self.numbers()
        for number in numbers:
            try:
                with open(self.path(number), "rb") as handle:
                    found, torn = decode_all(handle.read())
            except OSError as why:
                log.error("outbox journal %s unreadable (%s); its results are lost",
                          self.path(number), why)
                continue
            if torn:
                log.warning("outbox journal %s: %d trailing bytes ignored (a record torn by a "
                            "power cut; it was never fsync'd)", self.path(number), torn)
            rows.extend(found)
        rows.sort(key=lambda row: row[0])
        return rows, numbers

    def append(self, record: bytes, seq: int) -> None:
        """One write(); OSError (ENOSPC...) leaves the file as it was before."""
        if self._fd is None:
            self._open_next()
        written = 0
        try:
            while written < len(record):
                written += os.write(self._fd, record[written:])
        except OSError:
            if written:
                self._cut_back()
            raise
        self._size += written
        self._hi = seq

    def rotate(self) -> None:
        """Seal the current file (sync_sealed() makes it durable); new records go to a new
        file. A file that cannot be created leaves appends on the current one."""
        if self._fd is None or self._size == 0:
            return
        old_fd, old_number, old_hi = self._fd, self._number, self._hi
        try:
            self._open_next()
        except OSError as why:
            self._fd, self._number = old_fd, old_number
            log.debug("outbox journal: cannot start a new file (%s); appending to the old", why)
            return
        self._unsynced.append(old_fd)
        self.sealed.append((old_number, old_hi))

    def sync_sealed(self) -> None:
        """fsync the sealed files (and their folder, for new names): after this a power cut
        cannot take their records. OSError goes to the caller."""
        while self._unsynced:
            fd = self._unsynced[0]
            os.fsync(fd)
            os.close(fd)
            self._unsynced.pop(0)
        if self._new_files:
            folder = os.open(os.path.dirname(os.path.abspath(self._base)), os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
            self._new_files = False

    def remove_upto(self, seq: int) -> None:
        """Delete the sealed files whose records all have seq <= `seq` (all resolved)."""
        done = [number for number, hi in self.sealed if hi <= seq]
        self.remove_sealed(done)

    def remove_sealed(self, numbers: List[int]) -> None:
        """Delete files whose rows are committed."""
        for number in numbers:
            try:
                os.unlink(self.path(number))
            except OSError as why:
                if not os.path.exists(self.path(number)):
                    continue
                log.warning("outbox journal %s: cannot delete (%s)", self.path(number), why)
        self.sealed = [(n, hi) for n, hi in self.sealed if n not in numbers]

    def close(self, remove_current: bool) -> None:
        for fd in self._unsynced:
            os.close(fd)
        self._unsynced = []
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if remove_current:
                self.remove_sealed([self._number])

    def _open_next(self) -> None:
        number = self._number + 1
        self._fd = os.open(self.path(number), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._number, self._size, self._new_files = number, 0, True

    def _cut_back(self) -> None:
        try:
            os.ftruncate(self._fd, self._size)      # shrinking needs no space
        except OSError as why:
            log.error("outbox journal: cannot cut back a partial record (%s)", why)
