"""The agent wheel a deploy sends: `pip wheel` of a clean copy of the checkout, built once per
source hash and cached (~/.cache/edgeagent/agent-wheels or $EDGEAGENT_WHEEL_CACHE)."""

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from typing import Optional

from .errors import DeployError

log = logging.getLogger(__name__)

# Wheels built from the same checkout are byte-identical (zip timestamps pinned), so an
# unchanged agent gives the same release hash and is not uploaded again.
_REPRODUCIBLE_EPOCH = "315532800"
WHEEL_CACHE_ENV = "EDGEAGENT_WHEEL_CACHE"


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
    _store(wheel, cached)
    return wheel


def _store(wheel: str, cached: str) -> None:
    """Into the cache atomically; a parallel deploy that stored it first wins."""
    try:
        tmp = tempfile.mkdtemp(prefix=".new-", dir=_made(wheel_cache_root()))
    except OSError as why:
        log.info("wheel: not cached (%s)", why)
        return
    try:
        shutil.copy2(wheel, tmp)
        os.rename(tmp, cached)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)


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
