"""Results through the outbox to the broker, in order, deleted only after the broker's PUBACK.

A sender thread drains the outbox oldest first with at most `window` messages in flight. After
every reconnect it starts again from the oldest unacknowledged message, so nothing is lost but a
subscriber may see a message twice (QoS 1 is at-least-once): it drops those by `seq`.
Status and health go out directly with send_now(): never queued, never in the way of results.
A result is published as soon as it is journaled (put() returned): never after the fsync.

Refused results: an MQTT 5 broker answers a denied publish with a PUBACK reason >= 0x80; the
result is counted in `rejected` (health: outbox.rejected, outbox.last_reject_reason), logged
loudly, and deleted (resending would be refused the same way). MQTT 3.1.1 has no such reason:
Mosquitto PUBACKs a denied QoS 1 publish like any other and drops it, so nothing here can count
it; docs/outbox.md says how to notice. What both protocols show is a broker that closes the
connection on a result (an over-size packet, or a broker whose ACL disconnects): a result that
is the oldest one in flight at POISON_DROPS lost connections in a row is counted as rejected
and deleted, so it cannot block every result behind it. From the second such loss on, what was
in flight is resent one at a time, so the oldest in flight is the one the broker closed on and
an innocent result ahead of the culprit is never blamed. Results paho refuses to send (an
invalid topic) are counted the same way.
"""

import collections
import logging
import threading
import time
from typing import Deque, Dict, Optional, Tuple

from .link import MessageCallback, MqttLink
from .outbox import Outbox, Payload

log = logging.getLogger(__name__)

_READ_CHUNK = 500
_REFILL_AT = 200     # free window slots that make a refill worth one query
_WAKE_EVERY = 50     # PUBACKs that wake the sender (and the last ones always)
_STATUS_ROOM = 4     # in-flight slots left for status/health within the broker's receive maximum
REJECT_LOG_INTERVAL_S = 60.0
POISON_DROPS = 3     # lost connections in a row with the same oldest result in flight
REASONS = {0x80: "unspecified error", 0x83: "implementation specific error",
           0x87: "not authorized", 0x90: "topic name invalid", 0x91: "packet identifier in use",
           0x97: "quota exceeded", 0x99: "payload format invalid"}


class Publisher:
    def __init__(self, link: MqttLink, outbox: Outbox, window: int = 1000) -> None:
        self._link, self._outbox, self._window = link, outbox, window
        self._acks = collections.deque()       # type: Deque[Tuple[int, int, bool]]
        self._inflight = {}                    # type: Dict[int, int]   mid -> seq
        self._generation = 0                   # the connection _inflight belongs to
        self._cursor = 0                       # highest seq handed to that connection
        self.rejected = 0                      # PUBACKs with an MQTT 5 failure reason (ACL)
        self.last_reject_reason = None         # type: Optional[str]
        self._reject_logged_at = -REJECT_LOG_INTERVAL_S
        self._suspect = (0, 0)                 # (seq oldest in flight at lost connections, count)
        self._careful_until = 0                # one at a time up to this seq: find the culprit
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
        seq = self._outbox.put(topic, make_payload, qos)
        if seq is not None and not self._wake.is_set():
            self._wake.set()                  # publish now, not after the next commit
        return seq

    def send_now(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """Publish now if connected (status, health); False (dropped) when offline."""
        return self._link.publish(topic, payload, qos, retain) is not None

    def subscribe(self, topic: str, callback: MessageCallback) -> None:
        """callback(topic, payload) on the network thread, QoS 1, kept across reconnects."""
        self._link.subscribe(topic, callback)

    def flush(self, timeout_s: float) -> bool:
        """Wait until every submitted result is acknowledged by the broker; False on timeout."""
        deadline = time.monotonic() + timeout_s     # acked rows never need SQLite: just wait
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

    def stats(self) -> Dict[str, object]:
        """The outbox part of the health payload."""
        outbox = self._outbox
        return {"pending": outbox.pending_count, "dropped": outbox.dropped,
                "bytes": outbox.pending_bytes, "unstored": outbox.unstored,
                "storage": outbox.storage, "storage_error": outbox.storage_error,
                "rejected": self.rejected, "last_reject_reason": self.last_reject_reason,
                "recovered": outbox.recovered}

    # ---- link listener (network thread: note and wake only) ------------------------------
    def link_connected(self, generation: int) -> None:
        self._wake.set()

    def link_disconnected(self) -> None:
        self._wake.set()

    def link_published(self, generation: int, mid: int, code: int) -> None:
        self._acks.append((generation, mid, code))
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
            generation, mid, code = acks.popleft()
            seq = self._inflight.pop(mid, None) if generation == self._generation else None
            if seq is None:
                continue          # status/health, or a connection we already gave up on
            done.append(seq)
            if seq == self._suspect[0]:
                self._suspect = (0, 0)        # it went through: it was not what the broker hated
            if code >= 0x80:
                self._rejected(seq, "%s (0x%02X)" % (REASONS.get(code, "refused"), code))
        if done:
            self._outbox.ack_many(done)

    def _rejected(self, seq: int, reason: str) -> None:
        self.rejected += 1
        self.last_reject_reason = reason
        now = time.monotonic()
        if now - self._reject_logged_at >= REJECT_LOG_INTERVAL_S:
            self._reject_logged_at = now
            log.error("mqtt: broker %s REJECTED result seq %d: %s; %d results rejected so far and "
                      "deleted — check the broker ACL for user %r on topic prefix %s",
                      self._link.address, seq, self.last_reject_reason, self.rejected,
                      self._link.settings.username, self._link.settings.prefix)

    def _connection_lost_with(self, inflight) -> None:
        """A connection ended with results unacknowledged: the same oldest one every time
        means the broker drops the connection because of it."""
        if not inflight:
            return
        oldest = min(inflight)
        if self._suspect[1]:
            # lost twice with results in flight and the suspect never acknowledged: send those
            # one at a time, so the next lost connection names the result it was lost on (with
            # a full window the culprit may sit behind an innocent oldest one)
            self._careful_until = max(self._careful_until, max(inflight))
        count = self._suspect[1] + 1 if self._suspect[0] == oldest else 1
        self._suspect = (oldest, count)
        if count >= POISON_DROPS:
            self._suspect = (0, 0)
            self._outbox.ack(oldest)
            self._rejected(oldest, "the broker closed the connection each time it was sent (%d "
                                   "times; too large for it, or denied)" % count)

    def _send_more(self) -> None:
        generation = self._link.generation
        if generation != self._generation:       # new connection: resend from the oldest
            self._connection_lost_with(self._inflight.values())
            self._generation, self._cursor = generation, 0
            self._inflight.clear()
        limit = self._window
        if self._link.receive_maximum:
            limit = max(1, min(limit, self._link.receive_maximum - _STATUS_ROOM))
        if self._cursor < self._careful_until:
            limit = 1
        else:
            self._careful_until = 0
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
                    self._rejected(message.seq, "not sendable: %s" % why)
                    self._cursor = message.seq
                    continue
                if sent is None or sent[0] != generation:
                    return        # offline or reconnected meanwhile: the next round starts over
                self._inflight[sent[1]] = message.seq
                self._cursor = message.seq
