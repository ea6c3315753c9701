"""What goes to a host: the agent wheel (built once), dependency wheels, the unit file, and per
host the rendered config.yaml, pipeline, models and credentials; each named by its sha256 so
unchanged files are never sent twice. The release name is `<version>-<hash of all of them>`."""

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import yaml

from ..errors import ConfigError
from .errors import DeployError
from .inventory import Host, deep_merge, is_file_ref

log = logging.getLogger(__name__)

# Wheels built from the same checkout are byte-identical (zip timestamps pinned), so an
# unchanged agent gives the same release hash and is not uploaded again.
_REPRODUCIBLE_EPOCH = "315532800"
WHEEL_CACHE_ENV = "EDGEAGENT_WHEEL_CACHE"
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
    # --wheelhouse auto: resolves deps per device (agent.deploy.wheelhouse)
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


def build_wheel(repo_root: str, out_dir: str) -> str:
    """`pip wheel --no-deps` of a clean copy of the checkout (no stale build/ leftovers), built
    once per source hash: an unchanged checkout reuses the cached wheel."""
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgeagent-src-") as src:
        _copy_checkout(repo_root, src)
        cached = os.path.join(wheel_cache_root(), source_hash(src))
        found = _one_wheel(cached) if os.path.isdir(cached) else None
        if found:
            log.info("wheel: %s unchanged since its last build (cached)", os.path.basename(found))
            return _link_or_copy(found, out_dir)
        env = dict(os.environ, SOURCE_DATE_EPOCH=_REPRODUCIBLE_EPOCH)
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                               "--disable-pip-version-check", "-w", out_dir, src],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              universal_newlines=True)
    if done.returncode != 0:
        raise DeployError("building the wheel from %s failed: %s" % (repo_root, done.stdout[-1500:]))
    wheel = _one_wheel(out_dir)
    if wheel is None:
        raise DeployError("expected one edgeagent wheel in %s, found %s" % (out_dir,
                                                                          os.listdir(out_dir)))
    try:
        tmp = tempfile.mkdtemp(prefix=".new-", dir=_made(wheel_cache_root()))
        shutil.copy2(wheel, tmp)
        os.rename(tmp, cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)   # a parallel deploy stored it first
    return wheel


def wheel_cache_root() -> str:
    return os.environ.get(WHEEL_CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "edgeagent", "agent-wheels")


def source_hash(tree: str) -> str:
    """sha256 over every file's path, mode bit x and content, in path order."""
    h = hashlib.sha256()
    for base, dirs, files in sorted(os.walk(tree)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(base, name)
            h.update(os.path.relpath(path, tree).encode() + b"\0")
            h.update(b"x" if os.access(path, os.X_OK) else b"-")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        h.update(os.path.relpath(base, tree).encode() + b"/\0")   # empty folders count
    h.update(sys.version.split()[0].encode())   # the build backend runs on this Python
    return h.hexdigest()[:24]


def _one_wheel(folder: str) -> Optional[str]:
    wheels = [f for f in os.listdir(folder) if f.startswith("edgeagent-") and f.endswith(".whl")]
    return os.path.join(folder, wheels[0]) if len(wheels) == 1 else None


def _made(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    return folder


def _link_or_copy(source: str, out_dir: str) -> str:
    dest = os.path.join(out_dir, os.path.basename(source))
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)
    return dest


def _copy_checkout(repo_root: str, dest: str) -> None:
    listed = subprocess.run(["git", "-C", repo_root, "ls-files", "-z", "-co", "--exclude-standard"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    if listed.returncode != 0:   # not a git checkout: copy all but the usual build litter
        shutil.rmtree(dest)
        shutil.copytree(repo_root, dest, ignore=shutil.ignore_patterns(
            ".git", ".venv*", "build", "dist", "*.egg-info", "__pycache__"))
        return
    tops = set()
    for rel in listed.stdout.decode().split("\0"):
        source = os.path.join(repo_root, rel)
        if rel and os.path.isfile(source):
            os.makedirs(os.path.dirname(os.path.join(dest, rel)), exist_ok=True)
            shutil.copy2(source, os.path.join(dest, rel))
            tops.add(rel.split("/")[0])
    # git lists no empty folders, but pyproject may name one as a package (work in progress)
    for top in sorted(t for t in tops if os.path.isdir(os.path.join(repo_root, t))):
        for base, dirs, _ in os.walk(os.path.join(repo_root, top)):
            dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
            os.makedirs(os.path.join(dest, os.path.relpath(base, repo_root)), exist_ok=True)


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
    from ..profiles import load_profile
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
