"""`edgeagent monitor`: a fleet at a glance from MQTT (workstation side, Python 3.8+).

Subscribes to <prefix>/+/status, /health and /results and keeps, per device: its retained status,
the last health snapshot, and the result `seq` stream — duplicates (QoS 1 redelivery) dropped and
gaps (results the outbox dropped when full) counted, as any subscriber should."""

import json
import logging
import threading
import time
from typing import Dict, List, Optional

import paho.mqtt.client as paho

log = logging.getLogger(__name__)


class DeviceView:
    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.status: Dict = {}
        self.health: Dict = {}
        self.results = 0
        self.duplicates = 0
        self.gaps = 0
        self.last_seq: Optional[int] = None
        self.last_result: Dict = {}

    def on_result(self, payload: Dict) -> None:
        seq = payload.get("seq")
        if not isinstance(seq, int):
            return
        if self.last_seq is not None and seq <= self.last_seq:
            self.duplicates += 1
            return
        if self.last_seq is not None and seq > self.last_seq + 1:
            self.gaps += seq - self.last_seq - 1
        self.last_seq = seq
        self.results += 1
        self.last_result = payload

    def row(self) -> Dict:
        fps = self.health.get("fps", {})
        outbox = self.health.get("outbox", {})
        found = self.last_result.get("detections", self.last_result.get("classifications", []))
        return {"device": self.device_id, "state": self.status.get("state", "?"),
                "pipeline": self.status.get("pipeline", ""),
                "backend": self.status.get("backend", ""),
                "health": self.health.get("state", ""),
                "fps": fps.get("processed"), "camera": self.health.get("camera", {}).get("state"),
                "outbox_pending": outbox.get("pending"), "results": self.results,
                "last_seq": self.last_seq, "gaps": self.gaps, "duplicates": self.duplicates,
                "last_labels": sorted({d.get("label", "") for d in found})}


class FleetMonitor:
    def __init__(self, host: str, port: int, prefix: str = "edgeagent") -> None:
        self.prefix = prefix
        self.devices: Dict[str, DeviceView] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        kwargs = {"callback_api_version": paho.CallbackAPIVersion.VERSION2} if hasattr(
            paho, "CallbackAPIVersion") else {}
        self.client = paho.Client(**kwargs)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.host, self.port = host, port

    def start(self, timeout_s: float = 5.0) -> bool:
        self.client.connect(self.host, self.port, keepalive=30)
        self.client.loop_start()
        return self._connected.wait(timeout_s)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    def _on_connect(self, client, userdata, flags, rc, properties=None) -> None:
        for leaf in ("status", "health", "results"):
            client.subscribe("%s/+/%s" % (self.prefix, leaf), qos=1)
        self._connected.set()

    def _on_message(self, client, userdata, message) -> None:
        parts = message.topic.split("/")
        if len(parts) != 3:
            return
        try:
            payload = json.loads(message.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            log.warning("monitor: %s: not JSON; ignored", message.topic)
            return
        with self._lock:
            view = self.devices.setdefault(parts[1], DeviceView(parts[1]))
            if parts[2] == "status":
                view.status = payload
            elif parts[2] == "health":
                view.health = payload
            else:
                view.on_result(payload)

    def rows(self) -> List[Dict]:
        with self._lock:
            return [self.devices[d].row() for d in sorted(self.devices)]


COLUMNS = (("device", 14), ("state", 8), ("pipeline", 18), ("backend", 11), ("health", 15),
           ("fps", 6), ("camera", 12), ("outbox_pending", 8), ("results", 8), ("gaps", 5),
           ("last_labels", 20))


def format_table(rows: List[Dict]) -> str:
    header = " ".join(name[:width].ljust(width) for name, width in COLUMNS)
    lines = [header]
    for row in rows:
        cells = []
        for name, width in COLUMNS:
            value = row.get(name)
            text = ",".join(value) if isinstance(value, list) else ("" if value is None else str(value))
            cells.append(text[:width].ljust(width))
        lines.append(" ".join(cells))
    if not rows:
        lines.append("(no device has reported yet)")
    return "\n".join(lines)


def add_arguments(parser) -> None:
    parser.add_argument("--host", default="localhost")
    parser.add_argument("--port", type=int, default=1883)
    parser.add_argument("--prefix", default="edgeagent")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between tables")
    parser.add_argument("--duration", type=float, help="stop after this many seconds")
    parser.add_argument("--json", action="store_true", help="one JSON array of rows at the end")


def run(args) -> int:
    from .errors import OutputError
    monitor = FleetMonitor(args.host, args.port, args.prefix)
    try:
        if not monitor.start():
            raise OutputError("monitor: broker %s:%d did not accept the connection within 5 s"
                              % (args.host, args.port))
    except OSError as why:
        raise OutputError("monitor: cannot reach broker %s:%d (%s)" % (args.host, args.port, why))
    deadline = None if args.duration is None else time.monotonic() + args.duration
    try:
        while deadline is None or time.monotonic() < deadline:
            time.sleep(min(args.interval, max(0.0, deadline - time.monotonic()))
                       if deadline else args.interval)
            if not args.json:
                print(format_table(monitor.rows()) + "\n", flush=True)
    finally:
        monitor.stop()
    if args.json:
        print(json.dumps(monitor.rows(), indent=2))
    return 0
