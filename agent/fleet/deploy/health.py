"""Is the freshly restarted agent doing its job?

The gate itself runs on the device (remote_helper.gate): the unit is Type=notify, and the agent
sends READY=1 only once its backend is loaded and a first frame went through inference, so
`systemctl restart` succeeds exactly when the agent works; a start that fails, a unit already
failed or waiting to auto-restart ends the wait at once. Then, from the workstation, optionally:

* ``--health-cmd``: a local command run until it exits 0; ``{host}``, ``{address}``,
  ``{device}`` and ``{release}`` in its words are replaced;
* ``--health-mqtt BROKER[:PORT]``: the agent's status on ``<prefix>/<device>/status`` is
  ``online`` (retained is fine) and, after the restart, messages of that device carry a ``seq``
  that advances (results and health reports come from the durable outbox, numbered): the agent is
  publishing, not merely alive.
"""

import json
import logging
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple

from ... import wire

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PostSwitchCheck:
    service: str = "edgeagent"
    timeout_s: float = 60.0
    settle_s: float = 3.0          # only for units without readiness (not Type=notify)
    interval_s: float = 0.5
    cmd: Optional[str] = None                     # local command template
    mqtt: Optional[Tuple[str, int]] = None        # broker to watch the device's topics on


class MqttStatusWatch:
    """Subscribed to ``<prefix>/<device>/#`` before the restart so nothing slips by unseen."""

    def __init__(self, broker: Tuple[str, int], prefix: str, device_id: str) -> None:
        import paho.mqtt.client as paho   # the workstation has the agent's deps
        self.topic = wire.topic(prefix, device_id, wire.STATUS)
        self.base = "%s/%s" % (prefix, device_id)
        self._online = False
        self._seqs = []  # type: list   # (monotonic time, seq)
        self._lock = threading.Lock()
        if hasattr(paho, "CallbackAPIVersion"):
            self._client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        else:
            self._client = paho.Client()
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *a: client.subscribe(
            wire.topic(prefix, device_id, "#"), 1)
        self._client.connect(broker[0], broker[1], 30)
        self._client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            payload = json.loads(msg.payload.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(payload, dict):
            return
        with self._lock:
            if msg.topic == self.topic:
                self._online = payload.get("state") == wire.ONLINE
            elif isinstance(payload.get("seq"), int) and not msg.retain:
                self._seqs.append((time.monotonic(), payload["seq"]))

    def why_not(self, since: float) -> Optional[str]:
        """None when online and seq advanced after `since`, else what is missing."""
        with self._lock:
            online = self._online
            seqs = [s for t, s in self._seqs if t >= since]
        if not online:
            return "status on %s is not online" % self.topic
        if len(seqs) < 2 or max(seqs) <= min(seqs):
            return "no advancing seq on %s/# (%d numbered messages since the restart)" % (
                self.base, len(seqs))
        return None

    def close(self) -> None:
        self._client.loop_stop()
        self._client.disconnect()


def run_health_cmd(template: str, names: Mapping[str, str], timeout: float) -> Tuple[bool, str]:
    argv = [word.format(**names) for word in shlex.split(template)]
    try:
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=timeout, universal_newlines=True)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, "health command %s: %s" % (argv[0], exc)
    return done.returncode == 0, "health command `%s` exit %d%s" % (
        " ".join(argv), done.returncode, (": " + done.stdout.strip()[-300:]).rstrip(": "))


def wait_healthy(settings: PostSwitchCheck, names: Mapping[str, str], restarted_at: float,
                 watch: Optional[MqttStatusWatch] = None,
                 sleep: Callable[[float], None] = time.sleep) -> Optional[str]:
    """The workstation's checks, after the device's gate passed: None when they pass within
    the timeout, else why not."""
    deadline = time.monotonic() + settings.timeout_s
    why = "no check ran"
    while time.monotonic() < deadline:
        why = None
        if settings.cmd:
            ok, text = run_health_cmd(settings.cmd, names, max(1.0, deadline - time.monotonic()))
            why = None if ok else text
        if why is None and watch is not None:
            why = watch.why_not(restarted_at)
        if why is None:
            return None
        sleep(settings.interval_s)
    return "not healthy after %.0f s: %s" % (settings.timeout_s, why)
