"""The agent's own config file (/etc/edgeagent/config.yaml): validated into frozen settings.
No side effects: reading a config never opens a camera, a model or a socket."""

import socket
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Any, Mapping, Optional

from ..checks import (need_bool, need_choice, need_mapping, need_number, need_str, reject_unknown,
                     where)
from .dashboards_config import (HomeAssistantSettings, HttpSettings, SnapshotSettings,
                                homeassistant_settings, http_settings, snapshot_settings)
from ..checks import reader
from ..errors import ConfigError
from ..mqtt.settings import MqttSettings, OutboxSettings
from ..backends.spec import BACKEND_KEYS
from .yamlio import read_yaml

KEYS = ("device", "pipeline", "source", "backend", "state_dir", "mqtt", "outbox", "output",
        "health", "camera", "commands", "log")
KEYS += ("homeassistant", "http", "snapshots")
POLICIES = ("every_frame", "on_change", "interval")
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_STATE_DIR = "/var/lib/edgeagent"


@dataclass(frozen=True)
class OutputSettings:
    policy: str = "every_frame"     # which frames with results are published
    interval_s: float = 1.0         # for policy interval


@dataclass(frozen=True)
class HealthSettings:
    interval_s: float = 10.0


@dataclass(frozen=True)
class CameraSettings:
    stall_timeout_s: float = 5.0
    loop: bool = False
    reconnect_initial_s: float = 0.2    # first retry after a camera is lost, doubling ...
    reconnect_max_s: float = 2.0        # ... up to this (with +-20% jitter)


@dataclass(frozen=True)
class AgentConfig:
    path: str
    device_id: str
    profile: Optional[str]
    pipeline: str
    source: Optional[str]
    backend: Optional[str]
    state_dir: str
    mqtt: MqttSettings
    outbox: OutboxSettings
    output: OutputSettings
    health: HealthSettings
    camera: CameraSettings
    commands_enabled: bool
    log_level: str
    log_json: bool
    homeassistant: HomeAssistantSettings = HomeAssistantSettings()
    http: HttpSettings = HttpSettings()
    snapshots: SnapshotSettings = SnapshotSettings()
    commands_pipeline_dir: Optional[str] = None   # set_pipeline may also pick files from here


def load_config(path: Optional[str]) -> AgentConfig:
    """The config at `path`, or the defaults when no file is given."""
    if path is None:
        return config_from_dict({}, "<defaults>")
    return config_from_dict(read_yaml(path) or {}, path)


def config_from_dict(data: Any, path: str) -> AgentConfig:
    data = need_mapping(data, path, "")
    reject_unknown(data, KEYS, path)
    device = _section(data, "device", ("id", "profile"), path)
    backend = data.get("backend")
    if backend is not None:
        need_choice(backend, BACKEND_KEYS, path, "backend")
    log = _section(data, "log", ("level", "json"), path)
    commands = _section(data, "commands", ("enabled", "pipeline_dir"), path)
    return AgentConfig(
        path=path,
        device_id=_device_id(device.get("id"), path),
        profile=_opt_str(device, "profile", path, "device."),
        pipeline=need_str(data.get("pipeline", "face-detect"), path, "pipeline"),
        source=_opt_str(data, "source", path),
        backend=backend,
        state_dir=need_str(data.get("state_dir", DEFAULT_STATE_DIR), path, "state_dir"),
        mqtt=MqttSettings.from_dict(data.get("mqtt"), path),
        outbox=OutboxSettings.from_dict(data.get("outbox"), path),
        output=_output(_section(data, "output", ("policy", "interval_s"), path), path),
        health=_health(_section(data, "health", ("interval_s",), path), path),
        camera=_camera(_section(data, "camera", ("stall_timeout_s", "loop", "reconnect_initial_s",
                                                 "reconnect_max_s"), path), path),
        commands_enabled=need_bool(commands.get("enabled", False), path, "commands.enabled"),
        log_level=need_choice(log.get("level", "info"), LOG_LEVELS, path, "log.level"),
        log_json=need_bool(log.get("json", False), path, "log.json"),
        homeassistant=homeassistant_settings(data.get("homeassistant"), path),
        http=http_settings(data.get("http"), path),
        snapshots=snapshot_settings(data.get("snapshots"), path),
        commands_pipeline_dir=_opt_str(commands, "pipeline_dir", path, "commands."))


def _section(data: Mapping, key: str, allowed, path: str) -> Mapping:
    value = data.get(key)
    if value is None:
        return {}
    value = need_mapping(value, path, key)
    reject_unknown(value, allowed, path, key + ".")
    return value


def _opt_str(data: Mapping, key: str, path: str, prefix: str = "") -> Optional[str]:
    value = data.get(key)
    return None if value is None else need_str(value, path, prefix + key)


def _device_id(value: Any, path: str) -> str:
    device_id = socket.gethostname() if value is None else need_str(value, path, "device.id")
    if any(c in device_id for c in "/+#") or not device_id.strip():
        raise ConfigError("%s = %r: must not contain '/', '+' or '#' (it is an MQTT topic level)"
                          % (where(path, "device.id"), device_id))
    return device_id


def _output(section: Mapping, path: str) -> OutputSettings:
    get = reader(section, OutputSettings)   # absent keys: the field defaults
    return OutputSettings(
        policy=need_choice(get("policy"), POLICIES, path, "output.policy"),
        interval_s=need_number(get("interval_s"), path, "output.interval_s", 0.01))


def _health(section: Mapping, path: str) -> HealthSettings:
    get = reader(section, HealthSettings)   # absent keys: the field defaults
    return HealthSettings(need_number(get("interval_s"), path, "health.interval_s", 0.5, 3600))


def _camera(section: Mapping, path: str) -> CameraSettings:
    get = reader(section, CameraSettings)   # absent keys: the field defaults
    return CameraSettings(
        stall_timeout_s=need_number(get("stall_timeout_s"), path,
                                    "camera.stall_timeout_s", 0.5, 600),
        loop=need_bool(get("loop"), path, "camera.loop"),
        **_reconnect(section, path))


def _reconnect(section: Mapping, path: str) -> dict:
    get = reader(section, CameraSettings)   # absent keys: the field defaults
    initial = need_number(get("reconnect_initial_s"), path,
                          "camera.reconnect_initial_s", 0.01, 60)
    cap = need_number(get("reconnect_max_s"), path, "camera.reconnect_max_s",
                      0.01, 60)
    if initial > cap:
        raise ConfigError("%s = %s: must not exceed camera.reconnect_max_s (%s)" % (
            where(path, "camera.reconnect_initial_s"), initial, cap))
    return {"reconnect_initial_s": initial, "reconnect_max_s": cap}
