"""Prometheus metrics of the running agent (GET /metrics), via prometheus_client.

Imported only when the HTTP endpoint is on (`pip install edgeagent[http]`). Counters and gauges
are read from the parts that already count (pull: PipelineStats, the source, the outbox) at
scrape time; only the stage latency histograms are fed per frame, from the pipeline's observe
hook (a few dict lookups and additions under prometheus_client's lock)."""

import platform
import time
from typing import Callable, Dict

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import CONTENT_TYPE_LATEST  # noqa: F401  re-exported for the server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.process_collector import ProcessCollector

from .. import __version__
from ..types import CameraStatus
from .health import STARTING, STATES, effective_state

# Seconds: from a 1 ms preprocess on x86 to a 2 s CPU inference on a Pi 3.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class NothingRunning:
    """`now` before a service provides one (tests of the HTTP parts): no pipeline, starting."""

    state = STARTING

    def source(self):
        return None

    def backend_info(self):
        return None

    def status_fields(self):
        return "", ""


class MetricSources:
    """Where the collector reads at scrape time: the service's Current (`now`: state, source,
    backend info, pipeline), the pipeline counters and the outbox."""

    def __init__(self, stats, now=None, outbox: Callable[[], Dict[str, object]] = dict,
                 rejected: Callable[[], int] = int) -> None:
        self.stats = stats                                   # PipelineStats
        self.now = now if now is not None else NothingRunning()
        self.outbox = outbox                                 # () -> {pending, dropped, ...}
        self.rejected = rejected                             # () -> PUBACK failures


class AgentCollector:
    def __init__(self, sources: MetricSources, clock: Callable[[], float] = time.monotonic):
        self._s = sources
        self._clock = clock

    def describe(self):
        return []     # collected on demand only: no pre-registration of names

    def collect(self):
        s, stats = self._s, self._s.stats
        source = s.now.source()
        camera = source.status() if source is not None else CameraStatus()
        yield _counter("edgeagent_frames_captured", "Frames read from the source.", stats.captured)
        yield _counter("edgeagent_frames_processed", "Frames through inference and decode.",
                       stats.processed)
        yield _counter("edgeagent_frames_dropped",
                       "Frames dropped (replaced before inference, or by the source).",
                       stats.dropped + camera.dropped)
        yield _counter("edgeagent_camera_reconnects", "Times the camera was reopened.",
                       camera.reconnects)
        yield _counter("edgeagent_camera_stalls", "Times the camera delivered nothing for "
                       "camera.stall_timeout_s.", camera.stalls)
        outbox = s.outbox() or {}
        yield _gauge("edgeagent_outbox_pending_messages", "Results stored, not yet acknowledged "
                     "by the broker.", outbox.get("pending", 0))
        yield _gauge("edgeagent_outbox_pending_bytes", "Payload bytes of the pending results.",
                     outbox.get("bytes", 0))
        yield _counter("edgeagent_outbox_dropped", "Oldest results dropped at the outbox caps.",
                       outbox.get("dropped", 0))
        yield _counter("edgeagent_outbox_rejected", "Results the broker refused (MQTT 5 PUBACK "
                       "failure, e.g. ACL).", outbox.get("rejected", s.rejected()))
        last = stats.last_processed_mono
        age = GaugeMetricFamily("edgeagent_last_frame_age_seconds",
                                "Seconds since a frame last went through inference (NaN before "
                                "the first).")
        age.add_metric([], float("nan") if last is None else max(0.0, self._clock() - last))
        yield age
        state = GaugeMetricFamily("edgeagent_state", "1 for the agent's current state.",
                                  labels=["state"])
        current = effective_state(s.now.state, outbox, camera if source is not None else None)
        for name in STATES:
            state.add_metric([name], 1.0 if name == current else 0.0)
        yield state
        backend = InfoMetricFamily("edgeagent_backend", "The inference backend in use.")
        info = s.now.backend_info()
        backend.add_metric([], {"name": info.name if info else "",
                                "precision": str(info.precision or "") if info else "",
                                "device": info.device if info else "",
                                "pipeline": s.now.status_fields()[0]})
        yield backend
        build = InfoMetricFamily("edgeagent_build", "edgeagent version and Python.")
        build.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield build


def _counter(name: str, doc: str, value) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=float(value))


def _gauge(name: str, doc: str, value) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


class Metrics:
    """One registry per agent: the collector above, stage histograms, HTTP counters, and the
    process's own CPU and memory."""

    def __init__(self, sources: MetricSources) -> None:
        self.sources = sources
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(AgentCollector(sources))
        ProcessCollector(registry=self.registry)
        self._stages = Histogram("edgeagent_stage_latency_seconds",
                                 "Time per frame in each pipeline stage.", ["stage"],
                                 registry=self.registry, buckets=LATENCY_BUCKETS)
        self.requests = Counter("edgeagent_http_requests", "HTTP requests by path and status.",
                                ["path", "code"], registry=self.registry)
        self.infer_seconds = Histogram("edgeagent_http_infer_seconds",
                                       "POST /infer: decode, inference and payload.",
                                       registry=self.registry, buckets=LATENCY_BUCKETS)
        self._children = {}     # type: Dict[str, object]   stage -> labelled histogram

    def observe_timing(self, timing_ms: Dict[str, float]) -> None:
        for stage, ms in timing_ms.items():
            child = self._children.get(stage)
            if child is None:
                child = self._children[stage] = self._stages.labels(stage)
            child.observe(ms / 1000.0)

    def render(self) -> bytes:
        return generate_latest(self.registry)
