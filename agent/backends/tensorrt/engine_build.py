"""Building TensorRT engines into the engine cache: `edgeagent build-engine` and the backend's
first start both come through here.

build_engine() returns the cached engine when its sidecar says it is valid for this model,
TensorRT, GPU, precision, input size and DLA core, and builds it otherwise. A lock file keeps a
service start and a `build-engine` run from building the same engine twice at once.
"""

import contextlib
import fcntl
import hashlib
import logging
import os
import time
from typing import Iterator, Mapping, Optional

from .cuda_seam import GpuInfo, PycudaSeam
from ...errors import BackendUnavailable
from .builder import build_serialized
from .cache import CacheEntry, ensure_writable, key_parts, sha256_file, write_atomically
from .options import TrtOptions
from .progress import BuildProgress
from .runtime import import_tensorrt, init_plugins, make_logger, trt_version

log = logging.getLogger(__name__)


def cache_entry(trt, gpu: GpuInfo, onnx_path: str, opts: TrtOptions) -> CacheEntry:
    """Where the engine for this model, here, with these options lives (valid or not)."""
    parts = key_parts(sha256_file(onnx_path), trt_version(trt), gpu.name, gpu.cc, gpu.sm_count,
                      opts.precision, opts.input_size, opts.dla_core)
    return CacheEntry.for_model(opts.cache_dir, onnx_path, parts)


def build_engine(onnx_path: str, opts: TrtOptions, force: bool = False, trt=None,
                 seam: Optional[PycudaSeam] = None) -> str:
    """Path of a valid engine for onnx_path in opts.cache_dir, built now if needed."""
    trt = trt if trt is not None else import_tensorrt()
    own_seam = seam is None
    seam = seam if seam is not None else PycudaSeam()
    try:
        entry = cache_entry(trt, seam.gpu_info(), onnx_path, opts)
        reason = "rebuild forced" if force else entry.stale_reason()
        if reason is None:
            log.info("TensorRT engine cache hit: %s", entry.engine_path)
            return entry.engine_path
        ensure_writable(opts.cache_dir)
        with _build_lock(entry):
            if not force and entry.stale_reason() is None:   # built meanwhile by another process
                return entry.engine_path
            _build_into(trt, seam, onnx_path, opts, entry, reason)
        return entry.engine_path
    finally:
        if own_seam:
            seam.close()


def ensure_engine(onnx_path: str, opts: TrtOptions, trt, seam: PycudaSeam,
                  force: bool = False) -> str:
    """The backend's way in: a cache hit, or a build when build_on_start allows it."""
    if not force and not opts.build_on_start:
        entry = cache_entry(trt, seam.gpu_info(), onnx_path, opts)
        reason = entry.stale_reason()
        if reason is not None:
            raise BackendUnavailable(
                "tensorrt: no usable engine for %s in %s (%s) and build_on_start is false; build "
                "it with `edgeagent build-engine --pipeline ...` or set build_on_start: true"
                % (onnx_path, opts.cache_dir, reason))
        return entry.engine_path
    return build_engine(onnx_path, opts, force=force, trt=trt, seam=seam)


def run_build_engine(onnx_path: str, options: Mapping, context, force: bool = False) -> str:
    """`edgeagent build-engine` body: validate the options (with the same context the service
    passes), build (or reuse), return the path."""
    opts = TrtOptions.from_context(dict(options), context)
    path = build_engine(onnx_path, opts, force=force)
    log.info("TensorRT engine ready: %s", path)
    return path


def _build_into(trt, seam: PycudaSeam, onnx_path: str, opts: TrtOptions, entry: CacheEntry,
                reason: str) -> None:
    name = os.path.basename(onnx_path)
    log.info("building TensorRT %s engine for %s (%s); this takes minutes on a Jetson",
             opts.precision, name, reason)
    logger = make_logger(trt)
    init_plugins(trt, logger)
    started = time.monotonic()
    with seam.active(), BuildProgress(name, opts.progress) as progress:
        data = build_serialized(trt, seam, logger, onnx_path, opts, entry, progress)
        write_atomically(entry.engine_path, data)
        entry.write_sidecar(hashlib.sha256(data).hexdigest(), len(data), {
            "onnx": os.path.abspath(onnx_path), "workspace_mb": opts.workspace_mb,
            "build_seconds": round(time.monotonic() - started, 1)})
    log.info("TensorRT engine for %s written to %s in %.0f s (%d bytes)", name,
             entry.engine_path, time.monotonic() - started, len(data))


@contextlib.contextmanager
def _build_lock(entry: CacheEntry) -> Iterator[None]:
    path = os.path.join(entry.cache_dir, "." + entry.stem + ".lock")
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            log.info("another process is building %s; waiting for it", entry.engine_path)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
