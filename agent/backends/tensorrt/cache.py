"""The engine cache: one engine per (model bytes, TensorRT, GPU, precision, input size, DLA core).

A TensorRT engine only runs on the TensorRT version and GPU it was built for, so everything that
makes an engine valid goes into its key. The short key is in the file name
(``yolov8n-fp16-3fa2c81b9d04.engine``) and a sidecar JSON next to it records every key part plus
the engine's own sha256: an engine is loaded only when its sidecar matches what we would build
now and its bytes are intact. Anything else is rebuilt, never loaded.
"""

import datetime
import hashlib
import json
import logging
import os
import pwd
import re
import tempfile
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Dict, Optional, Tuple

from ...errors import ConfigError

log = logging.getLogger(__name__)

CACHE_FORMAT = 1          # bump when what we put into an engine changes
SHORT_KEY = 12


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def key_parts(onnx_sha256: str, trt_version: str, gpu_name: str, compute_capability: str,
              sm_count: int, precision: str, input_size: Optional[Tuple[int, int]],
              dla_core: Optional[int]) -> Dict[str, object]:
    """Everything that decides whether a serialized engine is valid here, as JSON values."""
    return {"cache_format": CACHE_FORMAT, "onnx_sha256": onnx_sha256, "tensorrt": trt_version,
            "gpu": gpu_name, "compute_capability": compute_capability, "sm_count": sm_count,
            "precision": precision,
            "input_size": list(input_size) if input_size is not None else None,
            "dla_core": dla_core}


def key_of(parts: Dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """Where one engine and its companions live in the cache directory."""

    cache_dir: str
    stem: str          # <model>-<precision>-<short key>
    parts: Dict[str, object]

    @classmethod
    def for_model(cls, cache_dir: str, onnx_path: str, parts: Dict[str, object]) -> "CacheEntry":
        model = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.splitext(os.path.basename(onnx_path))[0])
        stem = "%s-%s-%s" % (model, parts["precision"], key_of(parts)[:SHORT_KEY])
        return cls(cache_dir, stem, parts)

    @property
    def engine_path(self) -> str:
        return os.path.join(self.cache_dir, self.stem + ".engine")

    @property
    def sidecar_path(self) -> str:
        return os.path.join(self.cache_dir, self.stem + ".json")

    @property
    def calibration_path(self) -> str:
        return os.path.join(self.cache_dir, self.stem + ".calib")

    def timing_cache_path(self) -> str:
        """Tactic timings are per TensorRT version and GPU, shared by every model built there."""
        device = re.sub(r"[^A-Za-z0-9]+", "_", "%s-cc%s-sm%s" % (
            self.parts["gpu"], self.parts["compute_capability"], self.parts["sm_count"]))
        return os.path.join(self.cache_dir, "timing-trt%s-%s.cache" % (
            self.parts["tensorrt"], device.strip("_")))

    def stale_reason(self) -> Optional[str]:
        """None when the cached engine can be loaded, else why it must be (re)built."""
        if not os.path.isfile(self.engine_path):
            return "no engine in the cache yet"
        try:
            with open(self.sidecar_path, "r") as f:
                sidecar = json.load(f)
        except (OSError, ValueError) as why:
            return "sidecar %s unreadable (%s)" % (self.sidecar_path, why)
        recorded = sidecar.get("parts") if isinstance(sidecar, dict) else None
        if recorded != self.parts:
            return "sidecar key parts differ: %s" % _differences(recorded, self.parts)
        if sidecar.get("engine_sha256") != sha256_file(self.engine_path):
            return "engine file does not match the sha256 in its sidecar (corrupt or replaced)"
        return None

    def write_sidecar(self, engine_sha256: str, engine_bytes: int,
                      extra: Dict[str, object]) -> None:
        record = {"key": key_of(self.parts), "parts": self.parts, "engine_sha256": engine_sha256,
                  "engine_bytes": engine_bytes,
                  "built_at": datetime.datetime.now(datetime.timezone.utc).strftime(
                      "%Y-%m-%dT%H:%M:%SZ")}
        record.update(extra)
        write_atomically(self.sidecar_path, json.dumps(record, indent=2, sort_keys=True).encode())

    def remove(self) -> None:
        for path in (self.engine_path, self.sidecar_path):
            if os.path.exists(path):
                os.remove(path)


def _differences(recorded, wanted: Dict[str, object]) -> str:
    if not isinstance(recorded, dict):
        return "no key parts recorded"
    keys = sorted(set(recorded) | set(wanted))
    return ", ".join("%s %r -> %r" % (k, recorded.get(k), wanted.get(k))
                     for k in keys if recorded.get(k) != wanted.get(k))


def write_atomically(path: str, data) -> None:
    """tmp file in the same directory + fsync + rename: a crash leaves the old file or the new
    one, never half an engine that TensorRT would later choke on."""
    directory = os.path.dirname(path) or "."
    handle, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        with os.fdopen(handle, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    _fsync_dir(directory)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on directories; the rename is still atomic
        pass
    finally:
        os.close(fd)


def ensure_writable(cache_dir: str) -> None:
    """Creates the cache dir and proves we can write there, or says exactly how to fix it."""
    try:
        os.makedirs(cache_dir, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=".write-test-", dir=cache_dir)
        os.close(handle)
        os.remove(probe)
    except OSError as why:
        raise ConfigError(
            "TensorRT engine cache %s is not writable by user %s (%s: %s); fix: run the service "
            "with StateDirectory=edgeagent in its systemd unit (systemd creates "
            "/var/lib/edgeagent owned by the service user), or `sudo chown -R %s %s`, or point "
            "tensorrt cache_dir / --cache-dir at a writable directory" % (
                cache_dir, _user(), type(why).__name__, why.strerror or why, _user(), cache_dir))


def _user() -> str:
    """The effective user (not $USER, which sudo and su leave pointing at someone else)."""
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return "uid %d" % os.geteuid()
