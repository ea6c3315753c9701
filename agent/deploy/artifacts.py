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


@dataclass(frozen=True)
class ReleasePlan:
    """What one host gets, and the release it becomes."""

    name: str
    files: Tuple[Artifact, ...]
    credentials: Tuple[Artifact, ...]
    wheel: str
    site_packages: bool


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
    """`pip wheel --no-deps` of a clean copy of the checkout (no stale build/ leftovers)."""
    with tempfile.TemporaryDirectory(prefix="edgeagent-src-") as src:
        _copy_checkout(repo_root, src)
        env = dict(os.environ, SOURCE_DATE_EPOCH=_REPRODUCIBLE_EPOCH)
        done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q",
                               "--disable-pip-version-check", "-w", out_dir, src],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                              universal_newlines=True)
    if done.returncode != 0:
        raise DeployError("building the wheel from %s failed: %s" % (repo_root, done.stdout[-1500:]))
    wheels = [f for f in os.listdir(out_dir) if f.startswith("edgeagent-") and f.endswith(".whl")]
    if len(wheels) != 1:
        raise DeployError("expected one edgeagent wheel in %s, found %s" % (out_dir, wheels))
    return os.path.join(out_dir, wheels[0])


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
    if wheelhouse:
        if not os.path.isdir(wheelhouse):
            raise ConfigError("--wheelhouse %s: no such folder" % wheelhouse)
        deps = [hasher.artifact("wheels/" + f, os.path.join(wheelhouse, f))
                for f in sorted(os.listdir(wheelhouse))
                if f.endswith(".whl") and not f.startswith("edgeagent-")]
    unit_artifact = hasher.artifact("systemd/%s.service" % service, unit) if unit else None
    return Bundle(parts[1], hasher.artifact("wheels/" + name, wheel), tuple(deps), unit_artifact)


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
                       site_packages)
