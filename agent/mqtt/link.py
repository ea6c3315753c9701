"""The connection to the broker: one paho client per connection attempt, our own reconnect loop.

Why a fresh client per attempt: paho keeps unacknowledged messages in RAM and re-sends them
itself; the outbox already does that durably, so a fresh client means one owner of re-sending
(the Publisher) and nothing growing in paho while offline.

On every connect: birth `online` (retained, QoS 1) on <prefix>/<device>/status, then all
subscriptions again. Last will: `offline` (retained, QoS 1). Clean stop: `stopped`.
The session is persistent (clean_session False / clean_start False + session expiry) so the
broker keeps our subscriptions and queued commands across reconnects.

Bad credentials or not authorized (CONNACK 4/5, MQTT 5 reason 134/135) stop the retries: a
person has to fix the config (`failure` says what). TLS certificate errors are logged once,
clearly, and retried at the longest backoff (a broker certificate may be fixed without us).
"""

import logging
import socket
import ssl
import threading
import time
from typing import Any, Callable, Dict, Optional, Tuple

from .. import wire
from ..backoff import Backoff
from . import paho_compat
from . import tls
from .settings import MqttSettings

log = logging.getLogger(__name__)

CONNACK_TIMEOUT_S = 10.0
StatusPayload = Callable[[str], bytes]     # state ("online"/"offline"/"stopped") -> JSON bytes
MessageCallback = Callable[[str, bytes], None]


def reconnect_backoff(initial_s: float, max_s: float) -> Backoff:
    """Full jitter below each ceiling ([ceiling/2, ceiling]): a fleet does not reconnect in
    lockstep."""
    return Backoff(initial_s, max_s, jitter=0.5, only_shorter=True)


class MqttLink:
    """Keeps one broker connection up; publishes, subscribes and reports acks to a listener.

    The listener (the Publisher) gets link_connected(generation), link_disconnected() and
    link_published(generation, mid, reason_code) — on the network thread: they must only note
    and wake. reason_code >= 0x80 is an MQTT 5 refusal; MQTT 3.1.1 PUBACKs carry none (0).
    """

    def __init__(self, settings: MqttSettings, device_id: str, status_payload: StatusPayload) -> None:
        self.settings = settings
        self.address = "%s:%d" % (settings.host, settings.port)
        self.status_topic = settings.topic(device_id, "status")
        self.client_id = settings.client_id_for(device_id)
        self._status_payload = status_payload
        self._mqtt5 = settings.protocol == "5"
        self._tls = tls.client_context(settings.tls) if settings.tls is not None else None
        self._subs = {}                        # type: Dict[str, MessageCallback]
        self._listener = None                  # type: Any
        self._lock = threading.Lock()
        self._client = None                    # the client of the live connection, or None
        self._generation = 0                   # +1 per successful CONNACK
        self._live = (None, 0)                 # (client, generation) while connected
        self.receive_maximum = None            # type: Optional[int]
        self._connected = threading.Event()
        self._session_over = threading.Event()
        self._stopping = threading.Event()
        self._backoff = reconnect_backoff(settings.reconnect.initial_s, settings.reconnect.max_s)
        self.failure = None                    # type: Optional[str]
        self.last_error = None                 # type: Optional[str]
        self._thread = threading.Thread(target=self._run, name="mqtt-link", daemon=True)

    # ---- public ----------------------------------------------------------------------
    def set_listener(self, listener: Any) -> None:
        self._listener = listener

    def start(self) -> None:
        self._thread.start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def generation(self) -> int:
        return self._generation

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def publish(self, topic: str, payload: bytes, qos: int = 0,
                retain: bool = False) -> Optional[Tuple[int, int]]:
        """Hand a message to the live connection: (generation, mid), or None when offline."""
        client, generation = self._live        # one read: both belong to the same connection
        if client is None:
            return None
        info = client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc != 0:
            return None
        return generation, info.mid

    def subscribe(self, topic: str, callback: MessageCallback, qos: int = 1) -> None:
        """callback(topic, payload) on the network thread; kept across reconnects."""
        self._subs[topic] = callback
        with self._lock:
            client = self._client
        if client is not None and self._connected.is_set():
            client.subscribe(topic, qos)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish `stopped` (retained), disconnect cleanly (no last will), end the thread."""
        self._stopping.set()
        with self._lock:
            client = self._client
        if client is not None and self._connected.is_set():
            info = client.publish(self.status_topic, self._status_payload(wire.STOPPED), qos=1,
                                  retain=True)
            _wait_published(info, timeout_s)
            client.disconnect()
        self._session_over.set()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # ---- reconnect loop ----------------------------------------------------------------
    def _run(self) -> None:
        while not self._stopping.is_set():
            if self._connect_once():
                self._backoff.reset()
            if self.failure is not None or self._stopping.is_set():
                break
            delay = self._backoff.next_delay()
            log.debug("mqtt: next attempt to connect to %s in %.1f s", self.address, delay)
            self._stopping.wait(delay)

    def _connect_once(self) -> bool:
        """One connection, from connect to its end; True if the broker accepted it."""
        client = self._new_client()
        self._session_over.clear()
        try:
            client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s,
                           **paho_compat.connect_kwargs(self._mqtt5))
        except (ssl.SSLError, ssl.CertificateError) as why:
            self._tls_failed(why)
            return False
        except (OSError, socket.error) as why:
            self._report("mqtt: cannot reach broker %s: %s; retrying with backoff up to %s s" % (
                self.address, why, self.settings.reconnect.max_s))
            return False
        with self._lock:
            self._client = client
        client.loop_start()
        accepted = self._wait_session_end(client)
        with self._lock:
            self._client = None
            self._live = (None, 0)
        self._connected.clear()
        client.loop_stop()
        return accepted

    def _wait_session_end(self, client: Any) -> bool:
        deadline = time.monotonic() + CONNACK_TIMEOUT_S
        while not self._session_over.wait(0.5):
            if getattr(client, "_thread", True) is None:     # paho's loop ended unannounced
                break
            if self._stopping.is_set() and not self._connected.is_set():
                client.disconnect()                           # stop() came before CONNACK
                break
            if not self._connected.is_set() and time.monotonic() > deadline:
                self._report("mqtt: broker %s sent no CONNACK within %.0f s" % (
                    self.address, CONNACK_TIMEOUT_S))
                client.disconnect()
                break
        return self._generation_of(client) is not None

    def _generation_of(self, client: Any) -> Optional[int]:
        return getattr(client, "_edgeagent_generation", None)

    def _new_client(self) -> Any:
        s = self.settings
        client = paho_compat.new_client(self.client_id, self._mqtt5)
        client.will_set(self.status_topic, self._status_payload(wire.OFFLINE), qos=1, retain=True)
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
            if s.tls is not None and s.tls.insecure:
                client.tls_insecure_set(True)
        paho_compat.bind(client, self, self._mqtt5)
        return client

    def _report(self, message: str) -> None:
        """Log a connection problem once; repeats of the same go to DEBUG (no log flood)."""
        if message != self.last_error:
            log.warning("%s", message)
        else:
            log.debug("%s", message)
        self.last_error = message

    def _tls_failed(self, why: Exception) -> None:
        message = tls.failure_message(why, self.address)
        if message != self.last_error:
            log.error("%s", message)
        self.last_error = message
        self._backoff.longest()

    # ---- paho callbacks (network thread; via paho_compat.bind) ---------------------------
    def handle_connack(self, client: Any, code: int, properties: Any) -> None:
        try:
            if code == 0:
                self._on_accepted(client, properties)
            elif code in (paho_compat.BAD_CREDENTIALS, paho_compat.NOT_AUTHORIZED):
                self.failure = ("mqtt: broker %s refused user %r: %s (reason %d); not retrying — "
                                "check mqtt.username and the password in %s" % (
                                    self.address, self.settings.username,
                                    "bad user name or password" if code == 134 else "not authorized",
                                    code, self.settings.password_source or "(none configured)"))
                self.last_error = self.failure
                log.error("%s", self.failure)
                self._session_over.set()
            else:
                self._report("mqtt: broker %s refused the connection (reason %d)" % (self.address, code))
                self._session_over.set()
        except Exception:  # noqa: BLE001 - an exception here would kill paho's thread
            log.exception("mqtt: error handling CONNACK")

    def _on_accepted(self, client: Any, properties: Any) -> None:
        self.receive_maximum = paho_compat.receive_maximum(properties)
        # Subscribe before the birth message: the broker handles one connection in order, so
        # whoever sees `online` can send a command and it arrives, even from a broker that
        # forgot our session.
        for topic in list(self._subs):
            client.subscribe(topic, 1)
        client.publish(self.status_topic, self._status_payload(wire.ONLINE), qos=1, retain=True)
        with self._lock:
            if self._client is not client:
                return
            self._generation += 1
            client._edgeagent_generation = self._generation
            self._live = (client, self._generation)
            self._connected.set()
        if self.last_error is not None:
            log.info("mqtt: connected to %s again (last problem: %s)", self.address, self.last_error)
        else:
            log.info("mqtt: connected to %s as %s", self.address, self.client_id)
        self.last_error = None
        if self._listener is not None:
            self._listener.link_connected(self._generation)

    def handle_disconnect(self, client: Any, code: int) -> None:
        try:
            was_up = self._connected.is_set() and self._client is client
            if self._live[0] is client:
                self._live = (None, 0)
            self._connected.clear()
            self._session_over.set()
            if was_up and not self._stopping.is_set():
                self._report("mqtt: lost connection to %s (code %d); reconnecting" % (self.address, code))
            if self._listener is not None:
                self._listener.link_disconnected()
        except Exception:  # noqa: BLE001
            log.exception("mqtt: error handling disconnect")

    def handle_puback(self, client: Any, mid: int, code: int) -> None:
        generation = self._generation_of(client)
        if generation is not None and self._listener is not None:
            try:
                self._listener.link_published(generation, mid, code)
            except Exception:  # noqa: BLE001
                log.exception("mqtt: error handling PUBACK")

    def handle_message(self, client: Any, topic: str, payload: bytes) -> None:
        for pattern, callback in list(self._subs.items()):
            if paho_compat.topic_matches_sub(pattern, topic):
                try:
                    callback(topic, payload)
                except Exception:  # noqa: BLE001 - one bad command must not kill the link
                    log.exception("mqtt: handler for %s failed on a message on %s", pattern, topic)


def _wait_published(info: Any, timeout_s: float) -> bool:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError):   # not connected / queue full: nothing to wait for
        return False
    return info.is_published()
