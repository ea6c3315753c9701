"""What goes to a host: the agent wheel (built once), dependency wheels, the unit file, and per
host the rendered config.yaml, pipeline, models and credentials; each named by its sha256 so
unchanged files are never sent twice. The release name is `<version>-<hash of all of them>`."""

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from ...errors import ConfigError
# build_wheel and _copy_checkout live in agent_wheel; deploy's CLI and the tests import them here
from .agent_wheel import _copy_checkout, build_wheel  # noqa: F401
from .errors import DeployError
from .inventory import Host, deep_merge, is_file_ref

log = logging.getLogger(__name__)

AUTO = "auto"    # --wheelhouse auto: resolve the dependency wheels per device


@dataclass(frozen=True)
class Artifact:
    dest: str     # path inside the release dir (or the credential's name)
    local: str    # file on this machine
    sha256: str
    size: int


@dataclass(frozen=True)
class Bundle:
    """What every host gets."""

    version: str
    wheel: Artifact
    deps: Tuple[Artifact, ...]
    unit: Optional[Artifact]
    # --wheelhouse auto: resolves deps per device (agent.fleet.deploy.wheelhouse)
    resolver: Optional[Any] = None
    extras: Tuple[str, ...] = ()


@dataclass(frozen=True)
class ReleasePlan:
    """What one host gets, and the release it becomes."""

    name: str
    files: Tuple[Artifact, ...]
    credentials: Tuple[Artifact, ...]
    wheel: str
    site_packages: bool
    venv_key: str = ""      # what the venv depends on: releases that differ in config share it


class Hasher:
    """sha256 of local files, each read once per run (threads share it)."""

    def __init__(self) -> None:
        self._known = {}  # type: Dict[str, Tuple[str, int]]
        self._lock = threading.Lock()

    def artifact(self, dest: str, local: str) -> Artifact:
        with self._lock:
            known = self._known.get(local)
        if known is None:
            h = hashlib.sha256()
            with open(local, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            known = (h.hexdigest(), os.path.getsize(local))
            with self._lock:
                self._known[local] = known
        return Artifact(dest, local, known[0], known[1])


def make_bundle(wheel: str, wheelhouse: Optional[str], unit: Optional[str], service: str,
                hasher: Hasher) -> Bundle:
    name = os.path.basename(wheel)
    parts = name.split("-")
    if len(parts) < 5 or not name.endswith(".whl"):
        raise ConfigError("--wheel %s: not a wheel file name (name-version-py-abi-platform.whl)"
                          % wheel)
    deps = []  # type: List[Artifact]
    if wheelhouse and wheelhouse != AUTO:
        if not os.path.isdir(wheelhouse):
            raise ConfigError("--wheelhouse %s: no such folder" % wheelhouse)
        deps = [hasher.artifact("wheels/" + f, os.path.join(wheelhouse, f))
                for f in sorted(os.listdir(wheelhouse))
                if f.endswith(".whl") and not f.startswith("edgeagent-")]
    unit_artifact = hasher.artifact("systemd/%s.service" % service, unit) if unit else None
    resolver = None
    if wheelhouse == AUTO:
        from .wheelhouse import WheelhouseResolver
        resolver = WheelhouseResolver(wheel)
    return Bundle(parts[1], hasher.artifact("wheels/" + name, wheel), tuple(deps), unit_artifact,
                  resolver)


def render_config(host: Host, remote_root: str) -> Dict[str, Any]:
    """The host's config.yaml: its base config file with the inventory overrides on top."""
    config = {}  # type: Dict[str, Any]
    if host.config:
        try:
            with open(host.config) as f:
                config = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError("%s: cannot read base config: %s" % (host.config, exc))
        if not isinstance(config, dict):
            raise ConfigError("%s: base config must be a mapping" % host.config)
    current = os.path.join(remote_root, "opt", "edgeagent", "current")
    overrides = {}  # type: Dict[str, Any]
    if host.device_id:
        overrides["device"] = {"id": host.device_id}
    if host.profile:
        overrides.setdefault("device", {})["profile"] = host.profile
    if host.pipeline:
        overrides["pipeline"] = (os.path.join(current, "pipelines", os.path.basename(host.pipeline))
                                 if is_file_ref(host.pipeline) else host.pipeline)
    if host.mqtt:
        overrides["mqtt"] = dict(host.mqtt)
    config = deep_merge(deep_merge(config, overrides), host.settings)
    return _substitute(config, {"{current}": current})


def _substitute(value: Any, names: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, names) for v in value]
    if isinstance(value, str):
        for key, text in names.items():
            value = value.replace(key, text)
    return value


def plan_release(host: Host, bundle: Bundle, site_packages: bool, staging: str,
                 hasher: Hasher, extras: Tuple[str, ...] = ()) -> ReleasePlan:
    """Every file of the host's release, by content, and the release name derived from them."""
    files = [bundle.wheel] + list(bundle.deps) + ([bundle.unit] if bundle.unit else [])
    text = yaml.safe_dump(render_config(host, host.remote_root), sort_keys=False).encode()
    digest = hashlib.sha256(text).hexdigest()
    rendered = os.path.join(staging, "config-" + digest)
    if not os.path.exists(rendered):
        with open(rendered, "wb") as f:
            f.write(text)
    files.append(hasher.artifact("config.yaml", rendered))
    if host.pipeline and is_file_ref(host.pipeline):
        files.append(hasher.artifact("pipelines/" + os.path.basename(host.pipeline), host.pipeline))
    for model in host.models:
        files.append(hasher.artifact("models/" + os.path.basename(model), model))
    dests = [f.dest for f in files]
    if len(set(dests)) != len(dests):
        raise ConfigError("%s: two files would land on the same release path: %s"
                          % (host.name, sorted(d for d in dests if dests.count(d) > 1)))
    creds = tuple(hasher.artifact(name, path) for name, path in host.credentials)
    identity = json.dumps([[f.dest, f.sha256] for f in files] +
                          [[c.dest, c.sha256] for c in creds] + [site_packages, sorted(extras)])
    name = "%s-%s" % (bundle.version, hashlib.sha256(identity.encode()).hexdigest()[:10])
    return ReleasePlan(name, tuple(files), creds, os.path.basename(bundle.wheel.dest),
                       site_packages, venv_key(bundle, site_packages, extras))


def venv_key(bundle: Bundle, site_packages: bool, extras: Tuple[str, ...]) -> str:
    """The wheels, extras and site-packages choice: all a venv is made of (the device adds its
    interpreter). Config, pipeline, models and credentials stay out."""
    identity = json.dumps([bundle.wheel.sha256, sorted(d.sha256 for d in bundle.deps),
                           site_packages, sorted(extras)])
    return hashlib.sha256(identity.encode()).hexdigest()[:16]


def for_device(bundle: Bundle, host: Host, probe: Mapping[str, Any],
               extras: Tuple[str, ...]) -> Tuple[Bundle, Tuple[str, ...]]:
    """The bundle and extras for one device: as given, or with the wheelhouse resolved for the
    device's Python, platform and profile (--wheelhouse auto)."""
    if bundle.resolver is None:
        return bundle, extras
    from .wheelhouse import Target
    target = Target.from_probe(probe)
    resolved = bundle.resolver.resolve(target, profile_backends(host, probe))
    log.info("%s: wheelhouse %s for %s: backend %s, extras %s (%.1f s%s)", host.name,
             os.path.basename(resolved.folder), target.describe(),
             resolved.backend or "from the system", ",".join(resolved.extras) or "none",
             resolved.seconds, ", cached" if resolved.cached else "")
    hasher = Hasher()
    deps = tuple(hasher.artifact("wheels/" + f, os.path.join(resolved.folder, f))
                 for f in sorted(os.listdir(resolved.folder))
                 if f.endswith(".whl") and not f.startswith("edgeagent-"))
    merged = tuple(sorted(set(extras) | set(resolved.extras)))
    return Bundle(bundle.version, bundle.wheel, deps, bundle.unit, None, merged), merged


def profile_backends(host: Host, probe: Mapping[str, Any]) -> Tuple[str, ...]:
    """The backends the device will try, in order: the one its config forces (`backend:`),
    else its profile's list: the host's profile, else what a board of its kind lists (Jetson:
    TensorRT first; else the generic profile of its CPU)."""
    from ...config.profiles import load_profile
    forced = render_config(host, host.remote_root).get("backend")
    if isinstance(forced, str) and forced:
        return (forced,)
    if host.profile:
        return load_profile(host.profile).backends
    if probe.get("jetson"):
        return load_profile("jetson-nano").backends
    try:
        return load_profile("generic-%s" % probe["arch"]).backends
    except ConfigError:
        return ("onnxruntime", "tflite")
