"""The device side of `edgeagent deploy`: sent over ssh as `python3 - OP JSON` (the source on
stdin), so it must run on the oldest device Python (3.6, JetPack 4.6) with the standard library
only. It never imports the agent.

Layout under the target root R (``/`` on devices):
  R/opt/edgeagent/releases/<version>-<hash>/  wheels/ venv/ config.yaml pipelines/ models/
                                               systemd/ release.json COMPLETE
  R/opt/edgeagent/current -> releases/<name>   (switched by rename: always old or new, never half)
  R/opt/edgeagent/cache/<sha256>               uploaded files by content (folder mode 0700)
  R/etc/edgeagent/config.yaml -> R/opt/edgeagent/current/config.yaml
  R/etc/edgeagent/credentials/<name>           mode 0600 in a 0700 folder
  R/etc/systemd/system/<service>.service

The last stdout line is ``EDGEAGENT-RESULT <json>`` or ``EDGEAGENT-ERROR <message>``.
"""

import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import time

RESULT, ERROR = "EDGEAGENT-RESULT ", "EDGEAGENT-ERROR "


class Failure(Exception):
    """A step failed; the message goes back to the workstation as is."""


def paths(root):
    base = os.path.join(root, "opt", "edgeagent")
    return {"base": base, "releases": os.path.join(base, "releases"),
            "current": os.path.join(base, "current"), "cache": os.path.join(base, "cache"),
            "incoming": os.path.join(base, "cache", "incoming"), "lock": os.path.join(base, ".lock"),
            "etc": os.path.join(root, "etc", "edgeagent"),
            "units": os.path.join(root, "etc", "systemd", "system")}


def log(msg):
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def run(argv, timeout=600):
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            universal_newlines=True)
    out, _ = proc.communicate(timeout=timeout)
    return proc.returncode, out


def privileged(argv, use_sudo):
    """Run a command needing root: directly when we are root, else through `sudo -n`."""
    if os.geteuid() != 0 and use_sudo:
        argv = ["sudo", "-n"] + argv
    code, out = run(argv)
    if code != 0:
        raise Failure("%s failed (exit %d): %s" % (" ".join(argv), code, out.strip()[-500:]))
    return out


def current_release(p):
    try:
        return os.path.basename(os.readlink(p["current"]))
    except OSError:
        return None


def completed_releases(p):
    """Complete releases, oldest first (by when a deploy last activated them)."""
    found = []
    if os.path.isdir(p["releases"]):
        for name in os.listdir(p["releases"]):
            marker = os.path.join(p["releases"], name, "COMPLETE")
            if os.path.isfile(marker):
                found.append((os.stat(marker).st_mtime, name))
    return [name for _, name in sorted(found)]


def op_probe(args):
    p = paths(args["root"])
    cache = sorted(os.listdir(p["cache"])) if os.path.isdir(p["cache"]) else []
    try:
        import pip  # noqa: F401 -- only asks whether the system python has pip
        has_pip = True
    except ImportError:
        has_pip = False
    try:
        import venv  # noqa: F401 -- Debian/Ubuntu split it into python3-venv
        has_venv = True
    except ImportError:
        has_venv = False
    return {"python": list(sys.version_info[:3]), "python_path": sys.executable,
            "arch": platform.machine(), "hostname": platform.node(), "euid": os.geteuid(),
            "has_pip": has_pip, "has_venv": has_venv, "libc": libc_version(),
            "jetson": os.path.exists(os.path.join(args["root"], "etc", "nv_tegra_release")),
            "current": current_release(p), "releases": completed_releases(p),
            "cache": [c for c in cache if len(c) == 64]}


def take_lock(p):
    os.makedirs(p["releases"], exist_ok=True)
    for key in ("cache", "incoming"):
        os.makedirs(p[key], mode=0o700, exist_ok=True)
        os.chmod(p[key], 0o700)
    fd = os.open(p["lock"], os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        raise Failure("another deploy holds %s; wait for it or remove a stale one" % p["lock"])
    return fd


def accept_uploads(p, wanted):
    """Move verified uploads into the cache; every wanted hash must end up there."""
    for digest in wanted:
        cached = os.path.join(p["cache"], digest)
        if os.path.exists(cached):
            continue
        incoming = os.path.join(p["incoming"], digest)
        if not os.path.exists(incoming):
            raise Failure("upload %s missing in %s" % (digest, p["incoming"]))
        actual = sha256_of(incoming)
        if actual != digest:
            os.unlink(incoming)
            raise Failure("upload %s arrived corrupt (sha256 %s); deploy again" % (digest, actual))
        os.rename(incoming, cached)


def place(p, digest, dest):
    """Hard-link a cached file into a release (no copy), falling back to a copy."""
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    source = os.path.join(p["cache"], digest)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
    os.chmod(dest, 0o644)


def libc_version():
    """["glibc", "2.27"] as the C library reports itself (what decides manylinux wheels)."""
    try:
        name, _, version = os.confstr("CS_GNU_LIBC_VERSION").partition(" ")
        return [name, version]
    except (AttributeError, ValueError, OSError):
        return list(platform.libc_ver())


def make_venv(release, args):
    """The release's venv: shared by every release with the same dependencies (the key the
    workstation derives from the wheels, extras and interpreter), so a config-only change
    reuses it. release/venv is a relative link to R/opt/edgeagent/venvs/<key>."""
    p = paths(args["root"])
    # the same wheels under another interpreter are another venv
    key = hashlib.sha256(json.dumps([args.get("venv_key") or args["release"], sys.executable,
                                     sys.version]).encode()).hexdigest()[:16]
    folder = os.path.join(p["base"], "venvs", key)
    link = os.path.join(release, "venv")
    reused = os.path.isfile(os.path.join(folder, "COMPLETE"))
    if not reused:
        build_venv(folder, release, args)
        share_installed_files(p, folder)
    os.symlink(os.path.relpath(folder, release), link)
    drop_unused_venvs(p, keep=key)
    return reused


def build_venv(folder, release, args):
    """python -m venv at its final path (scripts carry it), a pip that reads manylinux2014
    wheels, then the agent from the release's wheels only (the device needs no internet)."""
    if os.path.lexists(folder):
        shutil.rmtree(folder)     # left by an interrupted install (no COMPLETE)
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    wheels = os.path.join(release, "wheels")
    pip_wheel = bootstrap_pip_wheel(wheels)
    argv = [sys.executable, "-m", "venv"]
    if args["site_packages"]:
        argv.append("--system-site-packages")
    # A pushed pip replaces ensurepip's; with system site-packages and no pushed pip the system
    # pip installs into the venv: skipping ensurepip saves seconds per device.
    if pip_wheel or (args["site_packages"] and args["system_pip"]):
        argv.append("--without-pip")
    code, out = run(argv + [folder])
    if code != 0:
        raise Failure("python -m venv failed: %s" % out.strip()[-800:])
    python = os.path.join(folder, "bin", "python")
    offline = ["--no-index", "--no-cache-dir", "--disable-pip-version-check", "--find-links",
               wheels]
    if pip_wheel:
        # pip runs from its own wheel file (zipimport) to install itself: the device's pip
        # (9.0.1 on JetPack 4.6) never has to read the manylinux wheels.
        code, out = run([python, os.path.join(pip_wheel, "pip"), "install", "-q"] + offline +
                        ["--no-deps", pip_wheel])
        if code != 0:
            raise Failure("bootstrapping %s into the venv failed: %s"
                          % (os.path.basename(pip_wheel), out.strip()[-1500:]))
    extras = "[%s]" % ",".join(args["extras"]) if args.get("extras") else ""
    code, out = run([python, "-m", "pip", "install"] + offline +
                    [os.path.join(wheels, args["wheel"]) + extras])
    if code != 0:
        raise Failure("pip install (offline, from %s) failed; missing dependency wheels go in "
                      "--wheelhouse (or --wheelhouse auto), or install them system-wide and use "
                      "--site-packages yes: %s" % (wheels, out.strip()[-1500:]))
    write_file(os.path.join(folder, "COMPLETE"), args["release"] + "\n")


def bootstrap_pip_wheel(wheels):
    """The pip wheel pushed with the release (--wheelhouse auto adds one), or None."""
    found = sorted(f for f in os.listdir(wheels) if f.startswith("pip-") and f.endswith(".whl"))
    return os.path.join(wheels, found[-1]) if found else None


def share_installed_files(p, venv):
    """Hard-link the venv's installed files from R/opt/edgeagent/store/<sha256>, so releases
    with the same dependency versions share one copy (onnxruntime alone is ~100 MB). Bytecode
    and scripts name their venv, so they stay per venv."""
    store = os.path.join(p["base"], "store")
    os.makedirs(store, exist_ok=True)
    for base, dirs, files in os.walk(os.path.join(venv, "lib")):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for name in files:
            path = os.path.join(base, name)
            if os.path.islink(path) or os.path.getsize(path) < 4096:
                continue
            stored = os.path.join(store, sha256_of(path))
            try:
                if not os.path.exists(stored):
                    os.link(path, stored)
                    continue
                tmp = path + ".ea-link"
                os.link(stored, tmp)
                os.rename(tmp, path)
            except OSError:
                return    # another file system or link limit: the venv keeps its own copies


def drop_unused_venvs(p, keep):
    """Venvs no release links to any more (pruned releases), and store files no venv uses."""
    venvs = os.path.join(p["base"], "venvs")
    used = {keep}
    if os.path.isdir(p["releases"]):
        for name in os.listdir(p["releases"]):
            link = os.path.join(p["releases"], name, "venv")
            if os.path.islink(link):
                used.add(os.path.basename(os.readlink(link)))
    for name in os.listdir(venvs):
        if name not in used:
            shutil.rmtree(os.path.join(venvs, name), ignore_errors=True)
    store = os.path.join(p["base"], "store")
    if os.path.isdir(store):
        for name in os.listdir(store):
            path = os.path.join(store, name)
            if os.stat(path).st_nlink == 1:
                os.unlink(path)


def detect(release):
    """The new release's own `edgeagent detect`, reading (and so validating) its new config."""
    code, out = run([os.path.join(release, "venv", "bin", "edgeagent"), "detect", "--json",
                     "--config", os.path.join(release, "config.yaml")], 120)
    if code != 0:
        raise Failure("the new release's `edgeagent detect --json` failed (exit %d): %s"
                      % (code, out.strip()[-1500:]))
    try:
        return json.loads(out[out.index("{"):])
    except ValueError:
        raise Failure("`edgeagent detect --json` printed no JSON: %s" % out.strip()[-500:])


def op_install(args):
    p = paths(args["root"])
    take_lock(p)
    accept_uploads(p, [f["sha256"] for f in args["files"]] +
                   [c["sha256"] for c in args["credentials"]])
    # Credentials are not versioned: the new config must find them when detect reads it.
    install_credentials(p, args["credentials"])
    release = os.path.join(p["releases"], args["release"])
    if os.path.isfile(os.path.join(release, "COMPLETE")):
        return {"reused": True, "detect": read_json(os.path.join(release, "release.json"))["detect"]}
    if os.path.lexists(release):
        shutil.rmtree(release)   # left by an interrupted deploy; never current (no COMPLETE)
    os.makedirs(release)
    for f in args["files"]:
        place(p, f["sha256"], os.path.join(release, f["dest"]))
    started = time.time()
    venv_reused = make_venv(release, args)
    venv_seconds = round(time.time() - started, 1)
    found = detect(release)
    write_file(os.path.join(release, "release.json"), json.dumps(
        {"release": args["release"], "files": args["files"], "detect": found,
         "credentials": args["credentials"], "site_packages": args["site_packages"],
         "venv": os.path.basename(os.readlink(os.path.join(release, "venv"))),
         "venv_reused": venv_reused, "venv_seconds": venv_seconds}, indent=1))
    write_file(os.path.join(release, "COMPLETE"), time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    fsync_dir(p["releases"])
    return {"reused": False, "detect": found, "venv_reused": venv_reused,
            "venv_seconds": venv_seconds}


def read_json(path):
    with open(path) as f:
        return json.load(f)


def write_file(path, text, mode=0o644):
    """Write via a temp file and rename, so readers see the old or the new file, never half."""
    tmp = path + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode)
    with os.fdopen(fd, "wb" if isinstance(text, bytes) else "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, mode)
    os.rename(tmp, path)


def atomic_symlink(target, link):
    """ln -s target link.tmp && mv -T link.tmp link: rename(2) replaces the old link at once."""
    tmp = link + ".tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.rename(tmp, link)
    fsync_dir(os.path.dirname(link))


def install_credentials(p, credentials):
    if not credentials:
        return
    folder = os.path.join(p["etc"], "credentials")
    os.makedirs(folder, mode=0o700, exist_ok=True)
    os.chmod(folder, 0o700)
    for cred in credentials:
        with open(os.path.join(p["cache"], cred["sha256"]), "rb") as f:
            write_file(os.path.join(folder, cred["name"]), f.read(), 0o600)


def install_unit(p, release, service, use_sudo):
    """Copy the release's unit file into place when it differs; True if systemd must reload."""
    source = os.path.join(release, "systemd", service + ".service")
    if not os.path.isfile(source):
        return False
    dest = os.path.join(p["units"], service + ".service")
    if os.path.isfile(dest) and sha256_of(dest) == sha256_of(source):
        return False
    if os.access(p["units"], os.W_OK) or os.geteuid() == 0:
        os.makedirs(p["units"], exist_ok=True)
        with open(source, "rb") as f:
            write_file(dest, f.read(), 0o644)
    else:
        privileged(["install", "-m", "0644", source, dest], use_sudo)
    return True


def link_config(p):
    os.makedirs(p["etc"], exist_ok=True)
    link = os.path.join(p["etc"], "config.yaml")
    target = os.path.join(p["current"], "config.yaml")
    if os.path.islink(link) and os.readlink(link) == target:
        return
    if os.path.lexists(link) and not os.path.islink(link):
        os.rename(link, link + ".before-edgeagent-deploy")   # keep a hand-written config
    atomic_symlink(target, link)


def systemctl(args, *verbs):
    privileged(["systemctl"] + list(verbs), args["sudo"])


def switch(p, name, args, touch):
    release = os.path.join(p["releases"], name)
    marker = os.path.join(release, "COMPLETE")
    if not os.path.isfile(marker):
        raise Failure("release %s is not complete; refusing to switch to it" % name)
    previous = current_release(p)
    reload_needed = install_unit(p, release, args["service"], args["sudo"])
    link_config(p)
    atomic_symlink(os.path.join("releases", name), p["current"])
    if touch:
        os.utime(marker, None)   # "last deployed" order, used by rollback and pruning
    if reload_needed:
        systemctl(args, "daemon-reload")
    if args["restart"]:
        systemctl(args, "restart", args["service"])
    return {"previous": previous, "current": name, "unit_changed": reload_needed}


def op_activate(args):
    p = paths(args["root"])
    take_lock(p)
    return switch(p, args["release"], args, touch=True)


def op_rollback(args):
    p = paths(args["root"])
    take_lock(p)
    target = args.get("to")
    if not target:
        done = completed_releases(p)
        now = current_release(p)
        older = done[:done.index(now)] if now in done else done
        if not older:
            raise Failure("no complete release older than %s under %s" % (now, p["releases"]))
        target = older[-1]
    return switch(p, target, args, touch=False)


def op_prune(args):
    p = paths(args["root"])
    take_lock(p)
    now = current_release(p)
    done = completed_releases(p)
    keep = set(done[-args["keep"]:]) | {now}
    removed = []
    for name in os.listdir(p["releases"]):
        if name not in keep:
            shutil.rmtree(os.path.join(p["releases"], name), ignore_errors=True)
            removed.append(name)
    referenced = set()
    for name in keep & set(done):
        info = read_json(os.path.join(p["releases"], name, "release.json"))
        referenced.update(f["sha256"] for f in info["files"] + info.get("credentials", []))
    for entry in os.listdir(p["cache"]):
        path = os.path.join(p["cache"], entry)
        if entry == "incoming":
            shutil.rmtree(path, ignore_errors=True)
        elif entry not in referenced:
            os.unlink(path)
    return {"removed": sorted(removed), "kept": sorted(keep)}


OPS = {"probe": op_probe, "install": op_install, "activate": op_activate,
       "rollback": op_rollback, "prune": op_prune}


def main():
    try:
        result = OPS[sys.argv[1]](json.loads(sys.argv[2]))
    except (Failure, OSError, ValueError, KeyError, subprocess.TimeoutExpired) as exc:
        # JSON keeps a multi-line message (a traceback tail) on the one last line.
        sys.stdout.write("\n" + ERROR + json.dumps("%s: %s" % (type(exc).__name__, exc)) + "\n")
        sys.exit(2)
    sys.stdout.write("\n" + RESULT + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
