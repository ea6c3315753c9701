"""An emulated Raspberry Pi OS Bookworm userland: Debian bookworm arm64 (what Pi OS 64-bit is
built on) made by mmdebstrap, run through qemu-user-static's binfmt_misc handler.

The root is built once per recipe into a cache folder and reused read-only: each test runs it
under an overlay (tests/boards/board.py), so nothing a deploy writes ever reaches the cache.

    python tests/boards/pi_root.py        # build (or find) the cached root; prints its path
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

CACHE = os.environ.get("EDGEAGENT_CI_CACHE", "/var/cache/edgeagent-ci")
# Everything that decides the root's contents; change it and a new root is built.
RECIPE = {"suite": "bookworm", "arch": "arm64", "variant": "minbase",
          "include": ["python3", "python3-venv", "openssh-server"]}
BINFMT = "/proc/sys/fs/binfmt_misc"
QEMU_CONF = "/usr/lib/binfmt.d/qemu-aarch64.conf"


def recipe_key() -> str:
    return hashlib.sha256(json.dumps(RECIPE, sort_keys=True).encode()).hexdigest()[:12]


def root_path() -> str:
    return os.path.join(CACHE, "pi-bookworm-%s" % recipe_key(), "root")


def ensure_binfmt() -> None:
    """Register qemu-aarch64 with binfmt_misc (mounting it first) unless it already is."""
    if not os.path.exists(os.path.join(BINFMT, "register")):
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", BINFMT], check=True)
    if os.path.exists(os.path.join(BINFMT, "qemu-aarch64")):
        return
    with open(QEMU_CONF) as f:
        line = "".join(l for l in f if not l.startswith("#")).strip()
    with open(os.path.join(BINFMT, "register"), "w") as f:
        f.write(line)


class cache_lock:
    """An exclusive flock on CACHE/.lock-<name>: parallel CI jobs build each cache entry once."""

    def __init__(self, name: str) -> None:
        os.makedirs(CACHE, exist_ok=True)
        self.file = open(os.path.join(CACHE, ".lock-" + name), "w")

    def __enter__(self) -> "cache_lock":
        import fcntl
        fcntl.flock(self.file, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def ensure_root(log=sys.stderr) -> str:
    """The cached root for RECIPE, built when absent (2-7 minutes). Returns its path."""
    ensure_binfmt()
    with cache_lock("pi-bookworm"):
        return _ensure_root(log)


def _ensure_root(log) -> str:
    root = root_path()
    if os.path.isfile(os.path.join(os.path.dirname(root), "COMPLETE")):
        return root
    if shutil.which("mmdebstrap") is None:
        raise RuntimeError("mmdebstrap missing: apt-get install mmdebstrap qemu-user-static")
    building = root + ".building"
    shutil.rmtree(building, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(os.path.dirname(root), exist_ok=True)
    started = time.monotonic()
    log.write("boards: building %s (mmdebstrap, a few minutes)\n" % root)
    log.flush()
    subprocess.run(["mmdebstrap", "--quiet", "--arch=" + RECIPE["arch"],
                    "--variant=" + RECIPE["variant"], "--include=" + ",".join(RECIPE["include"]),
                    RECIPE["suite"], building], check=True)
    # sshd host keys are made per test run (tests/boards/board.py); none ship in the cache
    for name in os.listdir(os.path.join(building, "etc", "ssh")):
        if name.startswith("ssh_host_"):
            os.unlink(os.path.join(building, "etc", "ssh", name))
    os.rename(building, root)
    with open(os.path.join(os.path.dirname(root), "COMPLETE"), "w") as f:
        json.dump(dict(RECIPE, seconds=round(time.monotonic() - started, 1)), f)
    log.write("boards: built in %.0f s\n" % (time.monotonic() - started))
    return root


if __name__ == "__main__":
    print(ensure_root())
