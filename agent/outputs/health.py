"""The health payload of docs/mqtt.md, assembled from what each part already counts.

HealthMonitor runs its own thread: every interval it asks `now` (the service's Current: the agent's
state, source, backend info, system readings, the interval itself) and `outbox_stats`, builds a
snapshot and hands it to `send` (MQTT send_now: never queued, never in the way of results).
Two states are derived, not set: a running agent whose outbox cannot store results (full disk,
I/O errors) reports DEGRADED, one whose camera is being reconnected CAMERA_LOST."""

import logging
import threading
import time
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Callable, Dict, Optional

from ..wire import BOOT_ID, HEALTH_SCHEMA, to_json_bytes, utc_iso
from ..stats import PipelineStats
from ..types import CAMERA_LOST as CAMERA_STATE_LOST, CameraStatus

log = logging.getLogger(__name__)

# The agent's states (health `state`, metrics edgeagent_state)
STARTING = "starting"
RUNNING = "running"
DEGRADED = "degraded"                 # derived: running, but the outbox cannot store
BUILDING_ENGINE = "building_engine"
CAMERA_LOST = "camera_lost"           # derived: running, but the camera is being reconnected
STOPPING = "stopping"
STATES = (STARTING, RUNNING, DEGRADED, BUILDING_ENGINE, CAMERA_LOST, STOPPING)

NO_CAMERA = {"state": "none", "reconnects": 0, "stalls": 0}     # before a source is open


def effective_state(state: str, outbox: Optional[Dict[str, object]],
                    camera: Optional[CameraStatus]) -> str:
    """The agent's state as reported: RUNNING becomes DEGRADED or CAMERA_LOST when so."""
    if state != RUNNING:
        return state
    if outbox is not None and outbox.get("storage", "ok") != "ok":
        return DEGRADED
    if camera is not None and camera.state == CAMERA_STATE_LOST:
        return CAMERA_LOST
    return state


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


def camera_part(source) -> Dict[str, object]:
    """The payload's camera object, from Source.status() and the source's uri."""
    status = source.status()
    return {"state": status.state, "reconnects": int(status.reconnects),
            "stalls": int(status.stalls), "uri": source.uri}


def backend_part(info) -> Dict[str, object]:
    if info is None:
        return {}
    return {"name": info.name, "precision": info.precision, "device": info.device}


class HealthMonitor:
    """Builds a snapshot every interval and sends it; reads are cheap and never raise.

    `now` has `state` (one of STATES, before deriving) and answers source(), backend_info(),
    system() and health_interval_s()."""

    def __init__(self, device_id: str, stats: PipelineStats, now,
                 send: Callable[[bytes], object],
                 outbox_stats: Callable[[], Dict[str, object]]) -> None:
        self.device_id = device_id
        self.stats = stats
        self._now = now
        self._send = send
        self._outbox_stats = outbox_stats
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
        source = self._now.source()
        return effective_state(self._now.state, outbox,
                               source.status() if source is not None else None)

    def snapshot(self) -> HealthSnapshot:
        source = self._now.source()
        camera = source.status() if source is not None else None
        fps = self.stats.fps()
        outbox = self._outbox_stats()
        return HealthSnapshot(
            ts=time.time(), uptime_s=time.monotonic() - self._started,
            state=effective_state(self._now.state, outbox, camera), fps=fps,
            latency_ms=self.stats.latency(),
            camera=camera_part(source) if source is not None else dict(NO_CAMERA),
            outbox=outbox, system=self._now.system(),
            backend=backend_part(self._now.backend_info()),
            frames={"captured": self.stats.captured, "processed": self.stats.processed,
                    "dropped": self.stats.dropped + (camera.dropped if camera else 0)})

    def publish_once(self) -> None:
        self._send(to_json_bytes(self.snapshot().to_payload(self.device_id)))

    def _run(self) -> None:
        while not self._stop.wait(self._now.health_interval_s()):
            try:
                self.publish_once()
            except Exception:  # health must never take the agent down; logged with traceback
                log.exception("health: building or sending the snapshot failed")
