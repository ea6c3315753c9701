"""One ingest consumer: an MQTT 5 member of the shared-subscription group feeding a writer
thread that owns its own PostgreSQL connection.

A message is acknowledged (PUBACK, paho manual_ack) only after its row is committed, and only
on the connection it arrived on: after a reconnect the broker redelivers what was not
acknowledged, and the duplicate it makes is ignored by the primary key. So a consumer, broker
or database crash loses nothing and duplicates nothing."""

import logging
import queue
import threading
import time
from typing import Callable, Dict, List, NamedTuple, Optional

import paho.mqtt.client as paho

from ... import wire
from ...errors import OutputError
from .rows import HealthRow, Rejected, ResultRow, to_row
from .store import Store

log = logging.getLogger(__name__)


class ConsumerSettings(NamedTuple):
    host: str = "localhost"
    port: int = 1883
    prefix: str = wire.DEFAULT_PREFIX
    group: str = "edgeagent-ingest"
    client_id: str = "edgeagent-ingest"
    session_expiry_s: int = 7 * 24 * 3600   # the broker keeps our queue this long while we are away
    receive_maximum: int = 1000             # unacknowledged messages the broker may send us
    batch: int = 1000                       # rows per INSERT at most
    linger_s: float = 0.02                  # after the first message, wait this long for more
    username: Optional[str] = None
    password: Optional[str] = None
    ca_file: Optional[str] = None
    keepalive_s: int = 30

    def filters(self) -> List[str]:
        return [wire.shared(self.group, wire.every_device(self.prefix, leaf))
                for leaf in (wire.RESULTS, wire.HEALTH)]


class Incoming(NamedTuple):
    generation: int
    mid: int
    qos: int
    topic: str
    payload: bytes


class Counters:
    def __init__(self) -> None:
        self.received = 0
        self.inserted = 0
        self.duplicates = 0
        self.rejected = 0

    def as_dict(self) -> Dict[str, int]:
        return {"received": self.received, "inserted": self.inserted,
                "duplicates": self.duplicates, "rejected": self.rejected}


def _need_paho2() -> None:
    if not hasattr(paho, "CallbackAPIVersion"):
        raise OutputError("ingest needs paho-mqtt 2 (manual acknowledgements): "
                          "pip install 'edgeagent[ingest]'")


class Consumer:
    def __init__(self, settings: ConsumerSettings, store: Store) -> None:
        _need_paho2()
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes
        self.settings = settings
        self.store = store
        self.counters = Counters()
        self.failure = None             # type: Optional[str]
        self.started = False            # connected to PostgreSQL and the broker once
        self._queue = queue.Queue()     # type: queue.Queue
        self._gen_lock = threading.Lock()
        self._generation = 0
        self._stopping = threading.Event()
        self._writer = threading.Thread(target=self._write_loop, name="ingest-writer-" + settings.client_id,
                                        daemon=True)
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=settings.client_id,
                                  protocol=paho.MQTTv5, manual_ack=True)
        if settings.username is not None:
            self.client.username_pw_set(settings.username, settings.password)
        if settings.ca_file is not None:
            self.client.tls_set(ca_certs=settings.ca_file)
        # back before the agents (0.5 s up to 60 s): a restarted Mosquitto forgets shared
        # subscriptions until a member subscribes again (docs/ingest.md)
        self.client.reconnect_delay_set(0.1, 2)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self._connect_props = Properties(PacketTypes.CONNECT)
        self._connect_props.SessionExpiryInterval = settings.session_expiry_s
        self._connect_props.ReceiveMaximum = settings.receive_maximum

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        self.store.connect()
        self.store.create_tables()
        try:
            self.client.connect(self.settings.host, self.settings.port, self.settings.keepalive_s,
                                clean_start=False, properties=self._connect_props)
        except OSError as why:
            self.store.close()
            raise OutputError("cannot reach broker %s:%d (%s)" % (
                self.settings.host, self.settings.port, why))
        self._writer.start()
        self.client.loop_start()
        self.started = True

    def stop(self, timeout_s: float = 10.0) -> None:
        """Take no new messages, commit and acknowledge what is queued, then disconnect. What
        the broker sent after that stays unacknowledged and is redelivered at the next start
        (same client id: the persistent session)."""
        self._stopping.set()
        self._queue.put(None)
        self._writer.join(timeout_s)
        time.sleep(0.1)                 # the network thread sends the last PUBACKs first
        self.client.disconnect()
        self.client.loop_stop()
        self.store.close()

    # -- network thread --------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._gen_lock:
            self._generation += 1
        if reason_code.is_failure:
            self.failure = "broker %s:%d refused the connection: %s" % (
                self.settings.host, self.settings.port, reason_code)
            log.error("ingest %s: %s", self.settings.client_id, self.failure)
            return
        log.info("ingest %s: connected to %s:%d (session present: %s)", self.settings.client_id,
                 self.settings.host, self.settings.port, flags.session_present)
        client.subscribe([(f, 1) for f in self.settings.filters()])

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._gen_lock:
            self._generation += 1
        if not self._stopping.is_set():
            log.warning("ingest %s: disconnected (%s); reconnecting", self.settings.client_id,
                        reason_code)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        failed = [str(rc) for rc in reason_codes if rc.is_failure]
        if failed:
            self.failure = "broker refused the subscription %s: %s" % (
                self.settings.filters(), ", ".join(failed))
            log.error("ingest %s: %s", self.settings.client_id, self.failure)
            return
        log.info("ingest %s: subscribed to %s", self.settings.client_id,
                 " and ".join(self.settings.filters()))

    def _on_message(self, client, userdata, message) -> None:
        if self._stopping.is_set():
            return                      # not acknowledged: redelivered at the next start
        self.counters.received += 1
        self._queue.put(Incoming(self._generation, message.mid, message.qos, message.topic,
                                 bytes(message.payload)))

    # -- writer thread ---------------------------------------------------------------------
    def _write_loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch:
                self._write(batch)
            if self._stopping.is_set() and self._queue.empty():
                return

    def _next_batch(self) -> List[Incoming]:
        """Blocks for the first message, then collects for at most linger_s or until the batch
        is full. Never stalls: the broker may send up to receive_maximum unacknowledged."""
        batch = []  # type: List[Incoming]
        try:
            item = self._queue.get(timeout=0.5)
        except queue.Empty:
            return batch
        deadline = time.monotonic() + self.settings.linger_s
        while item is not None:
            batch.append(item)
            if len(batch) >= self.settings.batch:
                break
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
        return batch

    def _write(self, batch: List[Incoming]) -> None:
        results, health, rejected = [], [], 0
        for item in batch:
            row = to_row(self.settings.prefix, item.topic, item.payload)
            if isinstance(row, Rejected):
                rejected += 1
                log.warning("ingest %s: rejected: %s", self.settings.client_id, row.reason)
            elif isinstance(row, ResultRow):
                results.append(row)
            else:
                health.append(row)
        refused_before = self.counters.rejected
        inserted = self._insert_until_done(results, health)
        refused = self.counters.rejected - refused_before    # by PostgreSQL, row by row
        self.counters.inserted += inserted
        self.counters.rejected += rejected
        self.counters.duplicates += len(results) + len(health) - inserted - refused
        self._ack(batch)

    def _insert_until_done(self, results: List[ResultRow], health: List[HealthRow]) -> int:
        """Retries with backoff while PostgreSQL is away; nothing is acknowledged meanwhile."""
        delay = 0.5
        while True:
            try:
                return self.store.insert(results, health)
            except self.store.psycopg.DataError as why:
                log.warning("ingest %s: batch refused (%s); inserting row by row",
                            self.settings.client_id, str(why).strip().splitlines()[0])
                return self._insert_one_by_one(results, health)
            except self.store.psycopg.OperationalError as why:
                log.warning("ingest %s: PostgreSQL: %s; retrying in %.1f s", self.settings.client_id,
                            str(why).strip().splitlines()[0] if str(why).strip() else why, delay)
                time.sleep(delay)
                delay = min(delay * 2, 10.0)
                self._reconnect_store()

    def _insert_one_by_one(self, results: List[ResultRow], health: List[HealthRow]) -> int:
        inserted = 0
        for row in results + health:
            pair = ([row], []) if isinstance(row, ResultRow) else ([], [row])
            try:
                inserted += self.store.insert(*pair)
            except self.store.psycopg.DataError as why:
                self.counters.rejected += 1
                log.warning("ingest %s: rejected %s/%s: %s", self.settings.client_id, row.device_id,
                            getattr(row, "seq", row.ts), str(why).strip().splitlines()[0])
        return inserted

    def _reconnect_store(self) -> None:
        self.store.close()
        try:
            self.store.connect()
        except OutputError as why:
            log.debug("ingest: %s", why)

    def _ack(self, batch: List[Incoming]) -> None:
        with self._gen_lock:
            for item in batch:
                if item.qos > 0 and item.generation == self._generation:
                    self.client.ack(item.mid, item.qos)


def run_consumers(consumers: List[Consumer], stop: threading.Event,
                  report: Callable[[List[Consumer]], None], report_every_s: float) -> None:
    """Start all, report every report_every_s until `stop` is set or one fails, stop all."""
    started = []  # type: List[Consumer]
    try:
        for consumer in consumers:
            consumer.start()
            started.append(consumer)
        while not stop.wait(report_every_s):
            report(consumers)
            failed = [c.failure for c in consumers if c.failure]
            if failed:
                raise OutputError(failed[0])
    finally:
        for consumer in started:
            consumer.stop()
