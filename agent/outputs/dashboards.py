"""What dashboards read from a running agent: Home Assistant discovery and occupancy, the local
HTTP endpoint (metrics, health, latest result, snapshot, /infer) and snapshots on detection.

The service hands over ready parts through five hooks (start, serialise, sink, observer,
pipeline_started) and stop(); with every feature off (the default) each hook gives back what it
was given and no thread is started. Metrics ask `now` (the service's Current) at each scrape."""

import logging
import threading
import time
from typing import Callable, List, Optional

from ..config.agent_config import AgentConfig
from ..errors import OutputError
from .homeassistant import (OCCUPANCY_LEAF, SNAPSHOT_LEAF, Discovery, DiscoveryInput,
                            config_topic, discovery_payload, encode)
from .occupancy import Occupancy
from .snapshot_policy import SnapshotOnDetection, labels_over

log = logging.getLogger(__name__)

TICK_S = 0.5


class Dashboards:
    def __init__(self, config: AgentConfig, outputs, stats, latest_frame, now=None) -> None:
        self.config = config
        self.outputs = outputs
        self.stats = stats
        self.now = now             # what runs now (state, source, backend), for the metrics
        self.latest = None         # LatestResult, with the HTTP endpoint
        self.app = None            # HttpApp, with the HTTP endpoint
        self.server = None
        self.discovery = None      # type: Optional[Discovery]
        self.occupancy = None      # type: Optional[Occupancy]
        self.snapshots = None      # type: Optional[SnapshotOnDetection]
        self._latest_frame = latest_frame
        self._stop = threading.Event()
        self._ticker = None        # type: Optional[threading.Thread]

    @property
    def _publisher(self):
        return self.outputs.publisher

    # ---- hooks --------------------------------------------------------------------------
    def start(self) -> "Dashboards":
        if self.config.http.enabled:
            self._start_http()
        if self.config.snapshots.enabled:
            self._start_snapshots()
        return self

    def serialise(self, backend):
        """The backend the pipeline should use: shared with /infer under one lock."""
        if self.app is None or not self.config.http.infer:
            return backend
        from .http_endpoints import SerialBackend
        return SerialBackend(backend)

    def sink(self, sink):
        return self.latest.wrap(sink) if self.app is not None else sink

    def observer(self, tap):
        """The pipeline's observe hook: the snapshot tap, then the dashboards' observers. Results
        reach the output thread without pixels; the tap restores them, so the observers get the
        frame the tap paired with the result."""
        extra = [fn for fn in (self._observe_metrics if self.app is not None else None,
                               self.snapshots.observe if self.snapshots is not None else None,
                               self._observe_occupancy if self.config.homeassistant.discovery
                               else None)
                 if fn is not None]
        return TapThen(tap, extra) if extra else tap

    def pipeline_started(self, plan, backend, health) -> None:
        if self.app is not None:
            self.app.health = health
            if self.config.http.infer:
                from .http_endpoints import InferEndpoint
                self.app.infer = InferEndpoint(plan, backend, self.config.device_id)
        if self._publisher is not None:
            self._start_homeassistant(plan)

    def stop(self) -> None:
        self._stop.set()
        if self.server is not None:
            self.server.stop()
        if self.discovery is not None:
            self.discovery.stop()
        if self._ticker is not None and self._ticker.is_alive():
            self._ticker.join(2.0)

    # ---- parts --------------------------------------------------------------------------
    def _start_http(self) -> None:
        settings = self.config.http
        from .metrics import Metrics, MetricSources   # config checked prometheus_client is there
        from .http_api import start_server
        from .http_endpoints import HttpApp, LatestResult
        self.latest = LatestResult()
        sources = MetricSources(self.stats, self.now, self.outputs.stats,
                                lambda: getattr(self._publisher, "rejected", 0))
        self.app = HttpApp(settings, Metrics(sources), self.latest, self.stats,
                           self._latest_frame)
        try:
            self.server = start_server(settings.address, settings.port, self.app)
        except OSError as why:
            raise OutputError("http: cannot listen on %s:%d (%s); choose another http.port or "
                              "http.address" % (settings.address, settings.port, why.strerror))

    def _observe_metrics(self, frame, result) -> None:
        self.app.metrics.observe_timing(result.timing_ms)

    def _start_snapshots(self) -> None:
        if self._publisher is None:
            log.warning("snapshots.labels is set but mqtt is off: snapshots on detection have "
                        "nowhere to go")
            return
        topic = self.config.mqtt.topic(self.config.device_id, SNAPSHOT_LEAF)
        self.snapshots = SnapshotOnDetection(
            self.config.snapshots, lambda jpeg: self._publisher.send_now(topic, jpeg, qos=0))
        log.info("snapshots on detection of %s to %s, at most one per label every %.0f s",
                 ", ".join(self.config.snapshots.labels), topic,
                 self.config.snapshots.min_interval_s)

    def _observe_occupancy(self, frame, result) -> None:
        occupancy = self.occupancy
        if occupancy is not None:
            occupancy.observe(labels_over(result, 0.0), time.monotonic())

    def _start_homeassistant(self, plan) -> None:
        ha, config = self.config.homeassistant, self.config
        labels = ha.occupancy_labels(plan.pipeline.labels) if ha.discovery else ()
        device = config.device_id
        info = DiscoveryInput(
            device_id=device, topic=lambda leaf: config.mqtt.topic(device, leaf),
            settings=ha, board=plan.device.model, profile=plan.profile.name, labels=labels,
            temperatures=_temperature_names(plan.profile), commands=config.commands_enabled,
            health_interval_s=config.health.interval_s)
        payload = encode(discovery_payload(info))
        if self.discovery is not None:          # a reload: new pipeline, maybe new labels
            self.discovery.update(payload)
        else:
            self.discovery = Discovery(self._publisher, ha, config_topic(ha.prefix, device),
                                       payload, config.state_dir).start()
        if labels and self.occupancy is None:
            self.occupancy = Occupancy(labels, ha.occupancy_hold_s, config.health.interval_s)
            self._ticker = threading.Thread(target=self._tick, name="dashboards", daemon=True)
            self._ticker.start()
        elif self.occupancy is not None:
            self.occupancy.labels = labels

    def _tick(self) -> None:
        topic = self.config.mqtt.topic(self.config.device_id, OCCUPANCY_LEAF)
        while not self._stop.wait(TICK_S):
            payload = self.occupancy.poll(time.monotonic())
            if payload is not None and not self._publisher.send_now(topic, payload, qos=0):
                self.occupancy.unsent()


def _temperature_names(profile) -> List[str]:
    """The health payload's temps_c keys: the profile's names, else the zones found now."""
    if profile.thermal:
        return [name for name, _ in profile.thermal]
    from ..board.sensors import read_temperatures
    return sorted(read_temperatures())


class TapThen:
    """A SnapshotTap followed by more (frame, result) observers, for PipelineRunner's observe."""

    def __init__(self, tap, observers: List[Callable]) -> None:
        self._tap = tap
        self._observers = observers

    def frame_seen(self, frame) -> None:
        self._tap.frame_seen(frame)

    def record(self, frame, result) -> None:
        self._tap.record(frame, result)
        latest = self._tap.latest()
        if latest is not None and latest[1] is result:
            frame = latest[0]
        for observe in self._observers:
            observe(frame, result)
