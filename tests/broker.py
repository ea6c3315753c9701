"""Test helpers: a real Mosquitto on a free port (start/stop/restart/kill, port kept across
restarts) and a Subscriber that records what it receives over a persistent QoS 1 session.

    broker = Broker(tmp_path).start()
    sub = Subscriber(broker.port, "edgeagent/dev1/#")
    ...
    assert sub.wait_for(lambda msgs: len(msgs) >= 10, timeout_s=5)
    sub.close(); broker.stop()

Never uses the system broker on 1883. Needs /usr/sbin/mosquitto (apt: mosquitto) and, for
the password tests, mosquitto_passwd (apt: mosquitto).
"""

import json
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Callable, List, NamedTuple, Optional

import paho.mqtt.client as paho

MOSQUITTO = os.environ.get("MOSQUITTO", "/usr/sbin/mosquitto")
MOSQUITTO_PASSWD = os.environ.get("MOSQUITTO_PASSWD", "mosquitto_passwd")
PAHO2 = hasattr(paho, "CallbackAPIVersion")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """One mosquitto process with its own config, persistence and log in `workdir`.

    conf_extra is appended to the config; `listener_conf` replaces the default plain,
    anonymous listener (e.g. a TLS listener with require_certificate)."""

    def __init__(self, workdir, port: Optional[int] = None, conf_extra: str = "",
                 listener_conf: Optional[str] = None) -> None:
        self.dir = str(workdir)
        self.port = port or free_port()
        self.conf_extra = conf_extra
        self.listener_conf = listener_conf
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.proc = None   # type: Optional[subprocess.Popen]

    def config_text(self) -> str:
        lines = [
            "persistence true",
            "persistence_location %s/" % os.path.join(self.dir, "persist"),
            "autosave_interval 1",          # a killed broker keeps (almost) everything too
            "max_queued_messages 100000",   # default 1000 drops QoS 1 for a slow subscriber
            "max_inflight_messages 1000",
            "log_type error", "log_type warning", "log_type notice", "log_type information",
            "log_dest stderr",
        ]
        if os.geteuid() == 0:
            lines.append("user root")       # else it drops to `mosquitto` and cannot read our files
        lines.append(self.listener_conf or "listener %d 127.0.0.1\nallow_anonymous true" % self.port)
        lines.append(self.conf_extra)
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 10.0) -> "Broker":
        if self.running:
            raise RuntimeError("mosquitto on port %d is already running" % self.port)
        os.makedirs(os.path.join(self.dir, "persist"), exist_ok=True)
        with open(self.conf_path, "w") as handle:
            handle.write(self.config_text())
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf_path], stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited with %s: %s" % (self.proc.returncode, self.log()))
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on %d: %s" % (self.port, self.log()))

    def stop(self) -> None:
        """SIGTERM: mosquitto saves its persistence file and exits; clients see the socket close."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        self._end(signal.SIGKILL)

    def restart(self) -> "Broker":
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _end(self, sig: int) -> None:
        if self.running:
            self.proc.send_signal(sig)
            self.proc.wait(10)

    def __enter__(self) -> "Broker":
        # `with Broker(d).start() as b:` must not start a second mosquitto (and leak the first)
        return self if self.running else self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def add_password(path: str, user: str, password: str) -> None:
    """Add a user to a mosquitto password file (created if missing)."""
    args = [MOSQUITTO_PASSWD, "-b", path, user, password]
    if not os.path.exists(path):
        args.insert(1, "-c")
    subprocess.check_call(args)


def paho_client(client_id: str, clean_session: bool = False) -> "paho.Client":
    if PAHO2:
        return paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                           clean_session=clean_session)
    return paho.Client(client_id=client_id, clean_session=clean_session)


class Received(NamedTuple):
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> dict:
        return json.loads(self.payload.decode("utf-8"))


class Subscriber:
    """Records every message on `topic` (QoS 1). With the default persistent session the broker
    queues messages for it while it is disconnected (a broker restart included)."""

    def __init__(self, port: int, topic: str, client_id: str = "test-subscriber",
                 persistent: bool = True, host: str = "127.0.0.1", tls_context=None,
                 username: Optional[str] = None, password: Optional[str] = None) -> None:
        self.messages = []   # type: List[Received]
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho_client(client_id, clean_session=not persistent)
        if tls_context is not None:
            self.client.tls_set_context(tls_context)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.on_connect = lambda client, *args: client.subscribe(topic, 1)
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(host, port, 30)
        self.client.loop_start()
        if not self._subscribed.wait(10):
            raise RuntimeError("subscriber could not subscribe to %s on port %d" % (topic, port))

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(Received(message.topic, bytes(message.payload), bool(message.retain)))

    def received(self, topic_suffix: str = "") -> List[Received]:
        with self._lock:
            return [m for m in self.messages if m.topic.endswith(topic_suffix)]

    def wait_for(self, predicate: Callable[[List[Received]], bool], timeout_s: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if predicate(self.received()):
                return True
            time.sleep(0.05)
        return predicate(self.received())

    def seqs(self, topic_suffix: str = "/results") -> List[int]:
        return [m.json()["seq"] for m in self.received(topic_suffix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def dedupe(seqs: List[int]) -> List[int]:
    """What a subscriber keeps: each seq once, dropping any seq not above the highest seen."""
    kept, top = [], 0
    for seq in seqs:
        if seq > top:
            kept.append(seq)
            top = seq
    return kept
