"""`edgeagent monitor`: a live view of a fleet over MQTT (workstation side, Python 3.8+).

Subscribes to <prefix>/+/status, /health and /results (docs/mqtt.md) and keeps per device its
status, its last health and its result stream (duplicates dropped, gaps counted). A device
whose status is offline/stopped, or that has been silent for --stale-after seconds, is marked
and its old health is not shown as current. docs/monitor.md shows the screen."""

import datetime
import json
import logging
import signal
import sys
import threading
import time
from typing import Dict, List, Optional

import paho.mqtt.client as paho

from .. import wire
from .monitor_screen import Screen, format_screen

log = logging.getLogger(__name__)

STALE = "stale"


def payload_time(payload: Dict) -> Optional[float]:
    """The payload's `ts` as epoch seconds, None when absent or malformed."""
    try:
        moment = datetime.datetime.strptime(payload.get("ts", ""), "%Y-%m-%dT%H:%M:%S.%fZ")
    except (TypeError, ValueError):
        return None
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


class DeviceView:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.status: Dict = {}
        self.health: Dict = {}
        self.health_at: Optional[float] = None     # when that health was current (epoch s)
        self.last_result: Dict = {}
        self.result_at: Optional[float] = None
        self.heard_at: Optional[float] = None      # last sign of life of any kind
        self.results = 0
        self.duplicates = 0
        self.gaps = 0
        self.last_seq: Optional[int] = None
        self.last_boot: Optional[str] = None

    def on_message(self, leaf: str, payload: Dict, retained: bool, now: float) -> None:
        # a retained message is as old as its ts says, not as new as its arrival
        at = payload_time(payload) if retained else now
        if at is not None:
            self.heard_at = max(self.heard_at or at, at)
        if leaf == wire.STATUS:
            self.status = payload
        elif leaf == wire.HEALTH:
            self.health, self.health_at = payload, at
        elif self._is_new(payload):
            self.last_result, self.result_at = payload, at

    def _is_new(self, payload: Dict) -> bool:
        """Per device, seq only rises (docs/mqtt.md): not above the highest is a duplicate; a
        jump within one boot_id is a loss. A jump to a new boot_id is not: after a crash the
        agent skips the rest of the seq block it had reserved."""
        seq = payload.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            return False
        if self.last_seq is not None and seq <= self.last_seq:
            self.duplicates += 1
            return False
        boot = payload.get("boot_id", "")
        if self.last_seq is not None and seq > self.last_seq + 1 and boot == self.last_boot:
            self.gaps += seq - self.last_seq - 1
        self.last_seq, self.last_boot = seq, boot
        self.results += 1
        return True

    def state(self, now: float, since: float, stale_after_s: float) -> str:
        announced = self.status.get("state")
        if announced in (wire.OFFLINE, wire.STOPPED):
            return announced
        if now - max(self.heard_at or since, since) > stale_after_s:
            return STALE
        if self._fresh(self.health_at, now, stale_after_s):
            return self.health.get("state") or announced or "?"
        return announced or "?"

    @staticmethod
    def _fresh(at: Optional[float], now: float, stale_after_s: float) -> bool:
        return at is not None and now - at <= stale_after_s

    def row(self, now: float, since: float, stale_after_s: float) -> Dict:
        state = self.state(now, since, stale_after_s)
        live = state not in (wire.OFFLINE, wire.STOPPED, STALE)
        health = self.health if live and self._fresh(self.health_at, now, stale_after_s) else {}
        result = self.last_result if live and self._fresh(self.result_at, now, stale_after_s) else {}
        latency = health.get("latency_ms") or {}
        outbox = health.get("outbox") or {}
        found = self.last_result.get("detections", self.last_result.get("classifications", []))
        infer = (latency.get("infer") or {}).get("p50", (result.get("timing_ms") or {}).get("infer"))
        return {"device": self.device_id, "state": state, "marked": not live,
                "pipeline": self.status.get("pipeline", ""), "backend": self.status.get("backend", ""),
                "health": health.get("state"), "fps": (health.get("fps") or {}).get("processed"),
                "infer_ms": infer,
                "p95_ms": {stage: v.get("p95") for stage, v in latency.items() if isinstance(v, dict)},
                "temps_c": (health.get("system") or {}).get("temps_c") or {},
                "camera": (health.get("camera") or {}).get("state"),
                "outbox_pending": outbox.get("pending"), "outbox_dropped": outbox.get("dropped"),
                "last_seen_s": None if self.heard_at is None else round(max(0.0, now - self.heard_at), 1),
                "results": self.results, "last_seq": self.last_seq, "gaps": self.gaps,
                "duplicates": self.duplicates, "last_labels": sorted({d.get("label", "") for d in found})}


class FleetMonitor:
    def __init__(self, host: str, port: int, prefix: str = wire.DEFAULT_PREFIX,
                 stale_after_s: float = 30.0) -> None:
        self.prefix = prefix
        self.stale_after_s = stale_after_s
        self.devices: Dict[str, DeviceView] = {}
        self.started = time.time()
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        kwargs = {"callback_api_version": paho.CallbackAPIVersion.VERSION2} if hasattr(
            paho, "CallbackAPIVersion") else {}
        self.client = paho.Client(**kwargs)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def start(self, timeout_s: float = 5.0) -> bool:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self._subscribed.wait(timeout_s)

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        client.subscribe([(wire.every_device(self.prefix, leaf), 1)
                          for leaf in (wire.STATUS, wire.HEALTH, wire.RESULTS)])

    def _on_message(self, client, userdata, message) -> None:
        where = wire.parse_topic(self.prefix, message.topic)
        if where is None:
            return
        try:
            payload = json.loads(message.payload.decode("utf-8"))
        except ValueError:
            log.debug("monitor: %s: not JSON; ignored", message.topic)
            return
        if not isinstance(payload, dict):
            return
        with self._lock:
            view = self.devices.setdefault(where[0], DeviceView(where[0]))
            view.on_message(where[1], payload, bool(message.retain), time.time())

    def rows(self, now: Optional[float] = None) -> List[Dict]:
        now = time.time() if now is None else now
        with self._lock:
            return [self.devices[d].row(now, self.started, self.stale_after_s)
                    for d in sorted(self.devices)]


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default=wire.DEFAULT_PREFIX)
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes")
    parser.add_argument("--stale-after", type=float, default=30.0, metavar="S",
                        help="mark a device stale after S seconds without a message (default 30: "
                             "3 health intervals)")
    parser.add_argument("--once", action="store_true",
                        help="listen --wait seconds, print one table (or JSON) and exit")
    parser.add_argument("--wait", type=float, default=2.0, metavar="S",
                        help="with --once: seconds to collect before printing (default 2)")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--json", action="store_true",
                        help="JSON rows instead of a table: one array per refresh, one per line")


def run(args) -> int:
    from ..errors import ConfigError, OutputError
    if args.interval <= 0 or args.stale_after <= 0 or args.wait < 0 or (
            args.duration is not None and args.duration < 0):
        raise ConfigError("--interval and --stale-after must be above 0 seconds, --wait and "
                          "--duration 0 or more (got %s, %s, %s, %s)" % (
                              args.interval, args.stale_after, args.wait, args.duration))
    monitor = FleetMonitor(args.host, args.port, args.prefix, args.stale_after)
    try:
        if not monitor.start():
            raise OutputError("broker %s:%d did not accept the subscription within 5 s"
                              % (args.host, args.port))
    except OSError as why:
        raise OutputError("cannot reach broker %s:%d (%s)" % (args.host, args.port, why))
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    try:
        if args.once:
            stop.wait(args.wait)
            _emit(monitor, args, screen=None, once=True)
        else:
            _live(monitor, args, stop)
    finally:
        monitor.stop()
    return 0


def _live(monitor: FleetMonitor, args, stop: threading.Event) -> None:
    """Redraws in place on a terminal (cursor home, erase each line and below); elsewhere
    writes one table (or JSON line) per refresh."""
    screen = Screen(sys.stdout) if sys.stdout.isatty() and not args.json else None
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while True:
            _emit(monitor, args, screen, once=False)
            left = args.interval if deadline is None else min(args.interval, deadline - time.monotonic())
            if left <= 0 or stop.wait(left):
                break
    finally:
        if screen is not None:
            screen.close()


def _emit(monitor: FleetMonitor, args, screen, once: bool) -> None:
    now = time.time()
    rows = monitor.rows(now)
    if args.json:
        print(json.dumps(rows, indent=2 if once else None), flush=True)
        return
    text = format_screen(rows, "%s:%d/%s" % (args.host, args.port, args.prefix), args.stale_after, now)
    if screen is None:
        print(text + ("" if once else "\n"), flush=True)
    else:
        screen.draw(text)
