"""Is the freshly restarted agent healthy? systemd must report the service active and keep it
active for a settle time (a crash-looping unit flips back), plus optional checks:

* ``--health-cmd``: a local command run until it exits 0; ``{host}``, ``{address}``,
  ``{device}`` and ``{release}`` in its words are replaced;
* ``--health-mqtt BROKER[:PORT]``: a live (not retained) ``online`` status published on
  ``<prefix>/<device>/status`` after the restart.
"""

import json
import logging
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Tuple

from .ssh import SshHost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthSettings:
    service: str = "edgeagent"
    timeout_s: float = 60.0
    settle_s: float = 3.0
    interval_s: float = 0.5
    cmd: Optional[str] = None                     # local command template
    mqtt: Optional[Tuple[str, int]] = None        # broker to watch the status topic on


class MqttStatusWatch:
    """Subscribed before the restart so no `online` message can slip by unseen."""

    def __init__(self, broker: Tuple[str, int], topic: str) -> None:
        import paho.mqtt.client as paho   # the workstation has the agent's deps
        self.topic = topic
        self._online_at = []  # type: list
        self._lock = threading.Lock()
        if hasattr(paho, "CallbackAPIVersion"):
            self._client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        else:
            self._client = paho.Client()
        self._client.on_message = self._on_message
        self._client.on_connect = lambda client, *a: client.subscribe(topic, 1)
        self._client.connect(broker[0], broker[1], 30)
        self._client.loop_start()

    def _on_message(self, client, userdata, msg) -> None:
        try:
            state = json.loads(msg.payload.decode("utf-8")).get("state")
        except (ValueError, UnicodeDecodeError, AttributeError):
            return
        if state == "online" and not msg.retain:   # retained = from before we subscribed
            with self._lock:
                self._online_at.append(time.monotonic())

    def online_since(self, since: float) -> bool:
        with self._lock:
            return any(t >= since for t in self._online_at)

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


def service_state(ssh: SshHost, service: str) -> str:
    done = ssh.run(["systemctl", "is-active", service], timeout=30)
    return done.stdout.decode("utf-8", "replace").strip() or "exit %d" % done.returncode


def wait_healthy(ssh: SshHost, settings: HealthSettings, names: Mapping[str, str],
                 restarted_at: float, watch: Optional[MqttStatusWatch] = None,
                 sleep: Callable[[float], None] = time.sleep) -> Optional[str]:
    """None when healthy within the timeout, else why not."""
    deadline = time.monotonic() + settings.timeout_s
    why = "no check ran"
    while time.monotonic() < deadline:
        why = _one_check(ssh, settings, names, restarted_at, watch, deadline)
        if why is None:
            sleep(settings.settle_s)
            state = service_state(ssh, settings.service)
            if state == "active":
                return None
            why = "service %s went %s within %.0f s of starting" % (
                settings.service, state, settings.settle_s)
        sleep(settings.interval_s)
    return "not healthy after %.0f s: %s" % (settings.timeout_s, why)


def _one_check(ssh: SshHost, settings: HealthSettings, names: Mapping[str, str],
               restarted_at: float, watch: Optional[MqttStatusWatch],
               deadline: float) -> Optional[str]:
    state = service_state(ssh, settings.service)
    if state != "active":
        return "service %s is %s" % (settings.service, state)
    if settings.cmd:
        ok, why = run_health_cmd(settings.cmd, names, max(1.0, deadline - time.monotonic()))
        if not ok:
            return why
    if watch is not None and not watch.online_since(restarted_at):
        return "no fresh online status on %s" % watch.topic
    return None
