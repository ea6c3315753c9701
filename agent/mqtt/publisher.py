"""Results through the outbox to the broker, in order, deleted only after the broker's PUBACK.

A sender thread drains the outbox oldest first with at most `window` messages in flight. After
every reconnect it starts again from the oldest unacknowledged message, so nothing is lost but a
subscriber may see a message twice (QoS 1 is at-least-once): it drops those by `seq`.
Status and health go out directly with send_now(): never queued, never in the way of results.
"""

import collections
import logging
import threading
import time
from typing import Deque, Dict, Tuple

from .link import MessageCallback, MqttLink
from .outbox import Outbox, Payload

log = logging.getLogger(__name__)

_READ_CHUNK = 500
_REFILL_AT = 200     # free window slots that make a refill worth one query
_WAKE_EVERY = 50     # PUBACKs that wake the sender (and the last ones always)
_STATUS_ROOM = 4     # in-flight slots left for status/health within the broker's receive maximum


class Publisher:
    def __init__(self, link: MqttLink, outbox: Outbox, window: int = 1000) -> None:
        self._link, self._outbox, self._window = link, outbox, window
        self._acks = collections.deque()       # type: Deque[Tuple[int, int, bool]]
        self._inflight = {}                    # type: Dict[int, int]   mid -> seq
        self._generation = 0                   # the connection _inflight belongs to
        self._cursor = 0                       # highest seq handed to that connection
        self.rejected = 0                      # PUBACKs with an MQTT 5 failure reason (ACL)
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._send_loop, name="mqtt-sender", daemon=True)
        link.set_listener(self)
        outbox.on_commit = self._wake.set

    def start(self) -> None:
        self._link.start()
        self._thread.start()

    def submit(self, topic: str, make_payload: Payload, qos: int = 1) -> int:
        """Store a result durably (never blocks on disk or network); returns its seq."""
        return self._outbox.put(topic, make_payload, qos)

    def send_now(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish now if connected (status, health); False (dropped) when offline."""
        return self._link.publish(topic, payload, qos, retain) is not None

    def subscribe(self, topic: str, callback: MessageCallback) -> None:
        """callback(topic, payload) on the network thread, QoS 1, kept across reconnects."""
        self._link.subscribe(topic, callback)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every submitted result is acknowledged by the broker; False on timeout."""
        deadline = time.monotonic() + timeout_s
        if not self._outbox.flush(timeout_s):
            return False
        while self._outbox.pending_count > 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def stop(self, drain_timeout_s: float = 5.0) -> None:
        """Drain while connected (bounded), publish `stopped`, disconnect, close the outbox."""
        if self._link.connected and self._thread.is_alive():
            if not self.flush(drain_timeout_s):
                log.warning("mqtt: %d results not acknowledged at stop; they stay in the outbox "
                            "and go out after the next start", self._outbox.pending_count)
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(drain_timeout_s)
        self._link.stop(drain_timeout_s)
        self._outbox.close()

    def stats(self) -> Dict[str, int]:
        """The outbox part of the health payload."""
        return {"pending": self._outbox.pending_count, "dropped": self._outbox.dropped,
                "bytes": self._outbox.pending_bytes}

    # ---- link listener (network thread: note and wake only) ------------------------------
    def link_connected(self, generation: int) -> None:
        self._wake.set()

    def link_disconnected(self) -> None:
        self._wake.set()

    def link_published(self, generation: int, mid: int, ok: bool) -> None:
        self._acks.append((generation, mid, ok))
        pending = len(self._acks)
        if pending >= _WAKE_EVERY or pending >= len(self._inflight):
            self._wake.set()

    # ---- sender thread ------------------------------------------------------------------
    def _send_loop(self) -> None:
        while not self._stopping:
            self._wake.wait(0.5)
            self._wake.clear()
            try:
                self._take_acks()
                if self._link.connected:
                    self._send_more()
            except Exception:  # noqa: BLE001 - the sender must outlive one bad round
                log.exception("mqtt: sender round failed; retrying")
                time.sleep(0.5)

    def _take_acks(self) -> None:
        acks, done = self._acks, []
        while acks:
            generation, mid, ok = acks.popleft()
            seq = self._inflight.pop(mid, None) if generation == self._generation else None
            if seq is None:
                continue          # status/health, or a connection we already gave up on
            done.append(seq)
            if not ok:
                self._rejected(seq)
        if done:
            self._outbox.ack_many(done)

    def _rejected(self, seq: int) -> None:
        self.rejected += 1
        if self.rejected == 1 or self.rejected % 1000 == 0:
            log.warning("mqtt: broker %s rejected result seq %d (%d so far): check the broker ACL "
                        "for topic prefix %s", self._link.address, seq, self.rejected,
                        self._link.settings.prefix)

    def _send_more(self) -> None:
        generation = self._link.generation
        if generation != self._generation:       # new connection: resend from the oldest
            self._generation, self._cursor = generation, 0
            self._inflight.clear()
        limit = self._window
        if self._link.receive_maximum:
            limit = max(1, min(limit, self._link.receive_maximum - _STATUS_ROOM))
        if len(self._inflight) > limit - min(_REFILL_AT, limit // 2 or 1):
            return                # refill in chunks: one query per many messages, not per PUBACK
        while len(self._inflight) < limit:
            batch = self._outbox.pending(min(limit - len(self._inflight), _READ_CHUNK), self._cursor)
            if not batch:
                return
            for message in batch:
                try:
                    sent = self._link.publish(message.topic, message.payload, message.qos)
                except ValueError as why:   # a bad topic must not block every result behind it
                    log.error("mqtt: result seq %d on %r cannot be published (%s); dropped",
                              message.seq, message.topic, why)
                    self._outbox.ack(message.seq)
                    self._cursor = message.seq
                    continue
                if sent is None or sent[0] != generation:
                    return        # offline or reconnected meanwhile: the next round starts over
                self._inflight[sent[1]] = message.seq
                self._cursor = message.seq
