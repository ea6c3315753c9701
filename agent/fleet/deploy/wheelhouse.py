"""`--wheelhouse auto`: the dependency wheels one device needs, resolved on the workstation.

The device has no internet, so everything its pip installs travels with the release. For the
device's Python (major.minor), CPU and glibc, and its profile's backends, this runs
`pip download --only-binary=:all: --platform ... --python-version ... --implementation cp` for
the agent wheel's own requirements (their markers evaluated for the device, not for this
machine), plus a pip that can read manylinux2014 wheels (pip 9.0.1, Ubuntu 18.04's, cannot).

* Jetson: TensorRT, pycuda and the GStreamer-enabled cv2 come from JetPack (the venv gets
  system site-packages), so no wheels for them. A CPU runtime from the profile's list is added
  when one exists for the device (the profile's fallback).
* elsewhere: cv2 (opencv extra) and the first backend of the profile's order that has wheels for
  the device. None has: NoWheelError, before anything is uploaded.

Pure-Python requirements published only as sdists (paho-mqtt 1.6.1, the last for Python 3.6)
are built into py3-none-any wheels here (agent.fleet.deploy.pip_download). Results ("no wheel" for a
day) are cached under ~/.cache/edgeagent/wheelhouses (or $EDGEAGENT_WHEELHOUSE_CACHE) by
everything that decides them, so the second deploy of the same kind of device resolves nothing.
"""

import fcntl
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from .errors import DeployError
from .pip_download import Requirement, download_wheels

log = logging.getLogger(__name__)

CACHE_ENV = "EDGEAGENT_WHEELHOUSE_CACHE"
# The newest pip each device Python can run; all read manylinux2014 and manylinux_2_x wheels.
BOOTSTRAP_PIP = {(3, 6): "pip==21.3.1", (3, 7): "pip==24.0"}
BOOTSTRAP_PIP_DEFAULT = "pip==24.3.1"
# profile backend key -> agent extra whose wheels provide it; None: the system provides it
BACKEND_EXTRAS = {"onnxruntime": "onnx", "tflite": "tflite", "tensorrt": None}
SYSTEM_ON_JETSON = ("tensorrt", "pycuda", "opencv")
NEGATIVE_TTL_S = 24 * 3600
FORMAT = 1   # bump when the layout of a cached wheelhouse changes


class NoWheelError(DeployError):
    """The device's Python/platform has no wheel for what its profile needs; nothing was sent."""

    kind = "no wheel"


@dataclass(frozen=True)
class Target:
    """What decides which wheels a device can install."""

    python: Tuple[int, int]
    arch: str                      # platform.machine(): x86_64, aarch64, armv7l
    glibc: Tuple[int, int]
    jetson: bool

    @classmethod
    def from_probe(cls, probe: Mapping[str, Any]) -> "Target":
        libc = probe.get("libc") or ["", ""]
        glibc = _version_pair(libc[1]) if libc[0] == "glibc" else None
        # A probe without libc (older helper) gets manylinux2014's floor: every glibc distro has it.
        return cls(tuple(probe["python"][:2]), probe["arch"], glibc or (2, 17), bool(probe["jetson"]))

    def describe(self) -> str:
        return "CPython %d.%d on linux %s (glibc %d.%d)%s" % (
            self.python + (self.arch,) + self.glibc + (", Jetson" if self.jetson else "",))

    def platforms(self) -> List[str]:
        """pip --platform tags the device accepts, newest first (PEP 600 and the legacy names)."""
        arch = {"armv7l": "armv7l", "arm64": "aarch64"}.get(self.arch, self.arch)
        tags = ["manylinux_%d_%d_%s" % (self.glibc[0], minor, arch)
                for minor in range(self.glibc[1], 16, -1)]
        tags.append("manylinux2014_%s" % arch)
        if arch in ("x86_64", "i686"):
            if self.glibc >= (2, 12):
                tags.append("manylinux2010_%s" % arch)
            tags.append("manylinux1_%s" % arch)
        tags.append("linux_%s" % arch)
        return tags

    def marker_env(self) -> Dict[str, str]:
        version = "%d.%d" % self.python
        return {"python_version": version, "python_full_version": version + ".0",
                "implementation_name": "cpython", "platform_python_implementation": "CPython",
                "sys_platform": "linux", "platform_system": "Linux", "os_name": "posix",
                "platform_machine": self.arch, "implementation_version": version + ".0"}


@dataclass(frozen=True)
class Resolved:
    folder: str                 # the wheels (agent excluded)
    extras: Tuple[str, ...]     # agent extras the device installs from them
    backend: Optional[str]      # backend whose wheels are in it (None: system's, e.g. TensorRT)
    pip: str                    # bootstrap pip wheel file name
    seconds: float
    cached: bool


def agent_requirements(wheel: str) -> List[str]:
    """Requires-Dist lines of the agent wheel's METADATA."""
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(name).decode("utf-8")
    return [line.split(":", 1)[1].strip() for line in text.splitlines()
            if line.startswith("Requires-Dist:")]


def requirements_for(lines: Sequence[str], target: Target, extras: Sequence[str]) -> List[str]:
    """The requirements that apply on the device, markers evaluated for it and dropped."""
    out = []
    for line in lines:
        req = Requirement(line)
        if req.marker is not None:
            envs = [dict(target.marker_env(), extra=e) for e in list(extras) + [""]]
            if not any(req.marker.evaluate(env) for env in envs):
                continue
        out.append("%s%s" % (req.name, req.specifier))
    return out


def cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(
        os.path.expanduser("~"), ".cache", "edgeagent", "wheelhouses")


class WheelhouseResolver:
    """Resolves (and caches) one wheelhouse per kind of device; threads share one resolver."""

    def __init__(self, agent_wheel: str, cache: Optional[str] = None,
                 pip: Sequence[str] = (sys.executable, "-m", "pip")) -> None:
        self.requirements = agent_requirements(agent_wheel)
        self.cache = cache or cache_root()
        self.pip = list(pip)
        self._locks = {}  # type: Dict[str, threading.Lock]
        self._guard = threading.Lock()

    def resolve(self, target: Target, backends: Sequence[str]) -> Resolved:
        """The wheelhouse for a device whose profile tries `backends` in this order."""
        started = time.monotonic()
        candidates = [b for b in backends if BACKEND_EXTRAS.get(b) is not None]
        if target.jetson and "tensorrt" in backends:
            base = ()     # JetPack's TensorRT, pycuda and cv2 through system site-packages
        else:
            base = ("opencv",)
        tried = []
        for backend in candidates:
            extras = base + (BACKEND_EXTRAS[backend],)
            found = self._cached_or_download(target, extras)
            if found is not None:
                return Resolved(found[0], extras, backend, found[1],
                                time.monotonic() - started, found[2])
            tried.append(backend)
        if target.jetson and "tensorrt" in backends:
            found = self._cached_or_download(target, base)
            if found is not None:
                return Resolved(found[0], base, None, found[1], time.monotonic() - started,
                                found[2])
        raise NoWheelError("no wheels of %s for %s on PyPI (profile backends: %s); nothing was "
                           "sent: use a device Python that has them (--remote-python), or "
                           "install the runtime system-wide and deploy with --wheelhouse DIR "
                           "--site-packages yes" % (
                               " or ".join(_backend_dists(b, target) for b in tried) or
                               "any runtime", target.describe(), ", ".join(backends)))

    def key(self, target: Target, extras: Sequence[str]) -> str:
        inputs = {"format": FORMAT, "requirements": sorted(self.requirements),
                  "extras": sorted(extras), "python": target.python, "arch": target.arch,
                  "glibc": target.glibc, "pip": _bootstrap_pip(target)}
        return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:16]

    def _cached_or_download(self, target: Target, extras: Tuple[str, ...]
                            ) -> Optional[Tuple[str, str, bool]]:
        key = self.key(target, extras)
        folder = os.path.join(self.cache, key)
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            os.makedirs(self.cache, exist_ok=True)
            with open(os.path.join(self.cache, ".lock-" + key), "w") as held:
                fcntl.flock(held, fcntl.LOCK_EX)    # other deploys on this machine
                result = _read_result(folder)
                if result is not None and result.get("ok"):
                    return folder, result["pip"], True
                # "no wheel" is remembered for a day: the index may publish one later
                if result is not None and time.time() - result.get("at", 0) < NEGATIVE_TTL_S:
                    return None
                return self._download(target, extras, folder)

    def _download(self, target: Target, extras: Tuple[str, ...], folder: str
                  ) -> Optional[Tuple[str, str, bool]]:
        wanted = requirements_for(self.requirements, target, extras)
        pip_req = _bootstrap_pip(target)
        log.info("wheelhouse: resolving %s for %s", ", ".join(wanted + [pip_req]),
                 target.describe())
        work = tempfile.mkdtemp(prefix=".new-", dir=self.cache)
        try:
            ok, why = download_wheels(self.pip, work, target, wanted + [pip_req])
            info = {"ok": ok, "requirements": wanted, "target": target.describe(),
                    "extras": list(extras), "at": time.time()}
            if ok:
                info["pip"] = next(f for f in os.listdir(work)
                                   if f.startswith("pip-") and f.endswith(".whl"))
            else:
                log.info("wheelhouse: %s", why)
                info["why"] = why
                for name in os.listdir(work):
                    os.unlink(os.path.join(work, name))
            _write_result(work, info)
            shutil.rmtree(folder, ignore_errors=True)
            os.rename(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return (folder, info["pip"], False) if ok else None


def _bootstrap_pip(target: Target) -> str:
    return BOOTSTRAP_PIP.get(target.python, BOOTSTRAP_PIP_DEFAULT)


def _backend_dists(backend: str, target: Target) -> str:
    return {"onnxruntime": "onnxruntime",
            "tflite": "tflite-runtime" if target.python < (3, 9) else "ai-edge-litert"
            }.get(backend, backend)


def _version_pair(text: str) -> Optional[Tuple[int, int]]:
    parts = text.split(".")
    if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


def _read_result(folder: str) -> Optional[Dict[str, Any]]:
    try:
        with open(os.path.join(folder, "RESOLVED.json")) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _write_result(folder: str, result: Dict[str, Any]) -> None:
    with open(os.path.join(folder, "RESOLVED.json"), "w") as f:
        json.dump(result, f, indent=1)
