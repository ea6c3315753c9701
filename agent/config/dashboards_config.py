"""The `homeassistant:`, `http:` and `snapshots:` config sections as frozen values (all off by
default). Pure data: nothing here opens a socket or imports prometheus_client."""

import importlib.util
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Any, Mapping, Optional, Tuple

from ..checks import (need_bool, need_int, need_list, need_mapping, need_number, need_str,
                     reject_unknown, where)
from ..checks import reader
from ..errors import ConfigError

HA_KEYS = ("discovery", "prefix", "labels", "occupancy_hold_s")
HTTP_KEYS = ("enabled", "port", "address", "infer", "max_body_bytes", "infer_per_s",
             "healthy_within_s")
SNAPSHOT_KEYS = ("labels", "min_interval_s", "min_score", "quality")
MAX_AUTO_LABELS = 8       # pipelines with more labels (COCO's 80) name theirs in the config


@dataclass(frozen=True)
class HomeAssistantSettings:
    discovery: bool = False
    prefix: str = "homeassistant"
    labels: Optional[Tuple[str, ...]] = None   # occupancy sensors; None: the pipeline's (<= 8)
    occupancy_hold_s: float = 5.0              # a label stays "detected" this long after a frame

    def occupancy_labels(self, pipeline_labels) -> Tuple[str, ...]:
        if self.labels is not None:
            return self.labels
        labels = tuple(pipeline_labels)
        return labels if len(labels) <= MAX_AUTO_LABELS else ()


@dataclass(frozen=True)
class HttpSettings:
    enabled: bool = False
    port: int = 8080
    address: str = "127.0.0.1"
    infer: bool = True                  # POST /infer
    max_body_bytes: int = 8 * 1024 * 1024
    infer_per_s: float = 5.0            # token bucket: this rate, bursts of up to 2 s of it
    healthy_within_s: float = 10.0      # /healthz is 200 while a frame was processed this recently


@dataclass(frozen=True)
class SnapshotSettings:
    labels: Tuple[str, ...] = ()        # snapshot when one of these is detected; () = off
    min_interval_s: float = 60.0        # per label
    min_score: float = 0.5
    quality: int = 80

    @property
    def enabled(self) -> bool:
        return bool(self.labels)


def homeassistant_settings(value: Any, path: str) -> HomeAssistantSettings:
    d = _section(value, path, "homeassistant", HA_KEYS)
    get = reader(d, HomeAssistantSettings)   # absent keys: the field defaults
    prefix = need_str(get("prefix"), path, "homeassistant.prefix")
    if any(c in prefix for c in "#+") or prefix.startswith("/") or prefix.endswith("/"):
        raise ConfigError("%s = %r: must not contain # or + nor start or end with /" % (
            where(path, "homeassistant.prefix"), prefix))
    labels = d.get("labels")
    return HomeAssistantSettings(
        discovery=need_bool(get("discovery"), path, "homeassistant.discovery"),
        prefix=prefix,
        labels=None if labels is None else _labels(labels, path, "homeassistant.labels"),
        occupancy_hold_s=need_number(get("occupancy_hold_s"), path,
                                     "homeassistant.occupancy_hold_s", 0.5, 3600))


def http_settings(value: Any, path: str) -> HttpSettings:
    """`http:` with a port switches the endpoint on unless `enabled: false`."""
    d = _section(value, path, "http", HTTP_KEYS)
    get = reader(d, HttpSettings)   # absent keys: the field defaults
    enabled = need_bool(d.get("enabled", "port" in d), path, "http.enabled")
    if enabled and importlib.util.find_spec("prometheus_client") is None:
        raise ConfigError("%s: the HTTP endpoint's /metrics needs prometheus_client, which is not "
                          "installed: pip install 'edgeagent[http]' (or set http.enabled: false)"
                          % where(path, "http"))
    return HttpSettings(
        enabled=enabled,
        port=need_int(get("port"), path, "http.port", 1, 65535),
        address=need_str(get("address"), path, "http.address"),
        infer=need_bool(get("infer"), path, "http.infer"),
        max_body_bytes=need_int(get("max_body_bytes"), path,
                                "http.max_body_bytes", 1024, 256 * 1024 * 1024),
        infer_per_s=need_number(get("infer_per_s"), path, "http.infer_per_s", 0.01, 1000),
        healthy_within_s=need_number(get("healthy_within_s"), path,
                                     "http.healthy_within_s", 0.5, 3600))


def snapshot_settings(value: Any, path: str) -> SnapshotSettings:
    d = _section(value, path, "snapshots", SNAPSHOT_KEYS)
    get = reader(d, SnapshotSettings)   # absent keys: the field defaults
    return SnapshotSettings(
        labels=_labels(d.get("labels", []), path, "snapshots.labels"),
        min_interval_s=need_number(get("min_interval_s"), path,
                                   "snapshots.min_interval_s", 1.0, 86400),
        min_score=need_number(get("min_score"), path, "snapshots.min_score", 0.0, 1.0),
        quality=need_int(get("quality"), path, "snapshots.quality", 10, 100))


def _section(value: Any, path: str, key: str, allowed) -> Mapping:
    d = need_mapping({} if value is None else value, path, key)
    reject_unknown(d, allowed, path, key + ".")
    return d


def _labels(value: Any, path: str, key: str) -> Tuple[str, ...]:
    labels = need_list(value, path, key)
    for label in labels:
        if not label.strip() or len(label) > 64:
            raise ConfigError("%s: label %r must be 1-64 characters" % (where(path, key), label))
    return tuple(labels)
