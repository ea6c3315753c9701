"""sd_notify(3) in a few lines: datagrams to $NOTIFY_SOCKET. A no-op outside systemd."""

import logging
import os
import socket
from typing import Optional

log = logging.getLogger(__name__)


class Notifier:
    def __init__(self, address: Optional[str] = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._address = None          # type: Optional[str]
        self._sock = None
        if address:
            # a leading '@' is Linux's abstract namespace, written with a NUL byte
            self._address = "\0" + address[1:] if address.startswith("@") else address
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *fields: str) -> bool:
        """Send e.g. notify("READY=1", "STATUS=running"); False when not under systemd."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(fields).encode("utf-8"), self._address)
            return True
        except OSError as why:
            log.debug("sd_notify %s failed: %s", fields, why)
            return False

    def status(self, text: str) -> bool:
        return self.notify("STATUS=" + text)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> Optional[float]:
    """Half of WatchdogSec= when systemd asked this process for keep-alives, else None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 2e6
    except ValueError:
        return None
