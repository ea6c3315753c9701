"""The health payload of docs/mqtt.md, assembled from what each part already counts.

HealthMonitor runs its own thread: every interval it builds a snapshot and hands it to `send`
(MQTT send_now: never queued, never in the way of results). The service's state (running,
degraded, building_engine, camera_lost, stopping) is set from outside; a running agent whose
outbox cannot store results (full disk, I/O errors) reports `degraded`."""

import logging
import threading
import time
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Callable, Dict, Optional

from ..wire import BOOT_ID, HEALTH_SCHEMA, to_json_bytes, utc_iso
from ..stats import PipelineStats

log = logging.getLogger(__name__)

STATES = ("starting", "running", "degraded", "building_engine", "camera_lost", "stopping")


@dataclass(frozen=True)
class HealthSnapshot:
    ts: float
    uptime_s: float
    state: str
    fps: Dict[str, float]
    latency_ms: Dict[str, Dict[str, float]]
    camera: Dict[str, object]
    outbox: Dict[str, object]
    system: Dict[str, object]
    backend: Dict[str, object]
    frames: Dict[str, int]

    def to_payload(self, device_id: str) -> Dict[str, object]:
        return {"schema": HEALTH_SCHEMA, "device_id": device_id, "boot_id": BOOT_ID,
                "ts": utc_iso(self.ts),
                "uptime_s": round(self.uptime_s, 1), "state": self.state, "fps": self.fps,
                "latency_ms": self.latency_ms, "camera": self.camera, "outbox": self.outbox,
                "system": self.system, "backend": self.backend, "frames": self.frames}


def camera_state(source) -> Dict[str, object]:
    """Camera part of health; plain sources (files, folders) have no reconnect counters."""
    return {"state": getattr(source, "state", "running"),
            "reconnects": int(getattr(source, "reconnects", 0)),
            "stalls": int(getattr(source, "stalls", 0)),
            "uri": getattr(source, "uri", "")}


class HealthMonitor:
    """Builds a snapshot every `interval_s` and sends it; reads are cheap and never raise."""

    def __init__(self, device_id: str, interval_s: float, stats: PipelineStats,
                 sensors, send: Callable[[bytes], object],
                 outbox_stats: Callable[[], Dict[str, object]],
                 backend_info: Dict[str, object]) -> None:
        self.device_id = device_id
        self.interval_s = interval_s
        self.stats = stats
        self.sensors = sensors
        self._send = send
        self._outbox_stats = outbox_stats
        self.backend_info = dict(backend_info)
        self.source = None
        self.state = "starting"
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(2.0)

    def effective_state(self, outbox: Optional[Dict[str, object]] = None) -> str:
        if self.state == "running" and outbox is not None and \
                outbox.get("storage", "ok") != "ok":
            return "degraded"
        if self.state == "running" and self.source is not None:
            cam = getattr(self.source, "state", "running")
            if cam == "camera_lost":
                return "camera_lost"
        return self.state

    def snapshot(self) -> HealthSnapshot:
        source_dropped = int(getattr(self.source, "dropped", 0) or 0)
        fps = self.stats.fps()
        outbox = self._outbox_stats()
        return HealthSnapshot(
            ts=time.time(), uptime_s=time.monotonic() - self._started,
            state=self.effective_state(outbox), fps=fps, latency_ms=self.stats.latency(),
            camera=camera_state(self.source) if self.source is not None else
            {"state": "none", "reconnects": 0, "stalls": 0},
            outbox=outbox, system=self.sensors.read(),
            backend=self.backend_info,
            frames={"captured": self.stats.captured, "processed": self.stats.processed,
                    "dropped": self.stats.dropped + source_dropped})

    def publish_once(self) -> None:
        self._send(to_json_bytes(self.snapshot().to_payload(self.device_id)))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.publish_once()
            except Exception:  # health must never take the agent down; logged with traceback
                log.exception("health: building or sending the snapshot failed")
