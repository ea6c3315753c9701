"""The device side of `edgeagent deploy`: sent over ssh as `python3 - OP JSON` (the source on
stdin), so it must run on the oldest device Python (3.6, JetPack 4.6) with the standard library
only. It never imports the agent. It is one file on purpose: it travels as one script (ssh stdin,
Ansible `script`).

Layout under the target root R (``/`` on devices):
  R/opt/edgeagent/releases/<version>-<hash>/  wheels/ venv/ config.yaml pipelines/ models/
                                               systemd/ release.json COMPLETE state.json
  R/opt/edgeagent/current -> releases/<name>   (switched by rename: always old or new, never half)
  R/opt/edgeagent/cache/<sha256>               uploaded files by content (folder mode 0700)
  R/opt/edgeagent/.lock                        flock + holder record (pid, boot id, start time)
  R/opt/edgeagent/sequence                     counter ordering activations (devices may lack a
                                               real-time clock, so no wall-clock order)
  R/etc/edgeagent/config.yaml -> R/opt/edgeagent/current/config.yaml
  R/etc/edgeagent/credentials/<name>           mode 0600 in a 0700 folder
  R/etc/systemd/system/<service>.service

Each release's state.json says `healthy`, `failed` or `unknown` (written by rename, so always
whole). Rollback goes to the newest healthy release; a release that failed its health gate
`attempts` times is not activated again unless forced. The health gate runs here, on the device,
so a lost connection cannot stop a rollback half-way.

The last stdout line is ``EDGEAGENT-RESULT <json>`` or ``EDGEAGENT-ERROR <message>``; the exit
code is 0, or one of EXIT_* below.
"""

import fcntl
import hashlib
import json
import os
import platform
import select
import shutil
import signal
import subprocess
import sys
import threading
import time

RESULT, ERROR = "EDGEAGENT-RESULT ", "EDGEAGENT-ERROR "
HEALTHY, FAILED, UNKNOWN = "healthy", "failed", "unknown"
EXIT_FAILURE, EXIT_CLIENT_GONE, EXIT_REFUSED, EXIT_NOT_RUNNABLE = 2, 3, 4, 5
ARGS = {}          # this run's arguments (lock settings reach take_lock through it)
CHILDREN = []      # running child processes, killed when the workstation goes away


class Failure(Exception):
    """A step failed; the message goes back to the workstation as is."""

    code = EXIT_FAILURE


class Refused(Failure):
    """The release failed its health gate too often; nothing was changed."""

    code = EXIT_REFUSED


class NotRunnable(Failure):
    """The release cannot run its pipeline here (validate failed); nothing was changed."""

    code = EXIT_NOT_RUNNABLE


def paths(root):
    base = os.path.join(root, "opt", "edgeagent")
    return {"base": base, "releases": os.path.join(base, "releases"),
            "current": os.path.join(base, "current"), "cache": os.path.join(base, "cache"),
            "incoming": os.path.join(base, "cache", "incoming"), "lock": os.path.join(base, ".lock"),
            "sequence": os.path.join(base, "sequence"),
            "etc": os.path.join(root, "etc", "edgeagent"),
            "units": os.path.join(root, "etc", "systemd", "system")}


def log(msg):
    try:
        sys.stderr.write(msg + "\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass   # the workstation went away; the work goes on


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


def run(argv, timeout=600, env=None):
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                universal_newlines=True, env=env)
    except OSError as exc:
        raise Failure("cannot run %s: %s" % (argv[0], exc.strerror or exc))
    CHILDREN.append(proc)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise Failure("%s did not finish within %.0f s" % (" ".join(argv[:3]), timeout))
    finally:
        CHILDREN.remove(proc)
    return proc.returncode, out


def privileged(argv, use_sudo, timeout=600, check=True):
    """Run a command needing root: directly when we are root, else through `sudo -n`."""
    if os.geteuid() != 0 and use_sudo:
        if shutil.which("sudo") is None:
            raise Failure("`%s` needs root and this device has no sudo: log in as root, install "
                          "sudo with a NOPASSWD rule for systemctl and install, or pass --no-sudo "
                          "if user %s may run it" % (" ".join(argv[:2]), _user()))
        argv = ["sudo", "-n"] + argv
    if shutil.which(argv[0]) is None and not os.path.isabs(argv[0]):
        raise Failure("`%s` not found on the device (PATH %s)%s" % (
            argv[0], os.environ.get("PATH", ""),
            ": it does not run systemd; deploy with --no-restart" if argv[0] == "systemctl" else ""))
    code, out = run(argv, timeout, env=_service_env())
    if code != 0 and check:
        hint = ("; allow user %s password-less `sudo -n` for it" % _user()
                if "password is required" in out else "")
        raise Failure("%s failed (exit %d): %s%s" % (" ".join(argv), code, out.strip()[-500:], hint))
    return code, out


def _user():
    try:
        import pwd
        return pwd.getpwuid(os.geteuid()).pw_name
    except (ImportError, KeyError):
        return str(os.geteuid())


def _service_env():
    """The target root travels to systemctl as EDGEAGENT_ROOT (systemd ignores it; the test
    suite's systemctl stand-in uses it to find the release it starts)."""
    env = dict(os.environ)
    env["EDGEAGENT_ROOT"] = ARGS.get("root", "/")
    return env


def current_release(p):
    try:
        return os.path.basename(os.readlink(p["current"]))
    except OSError:
        return None


def completed_releases(p):
    """Complete releases, oldest first (by activation order, then by completion time)."""
    found = []
    if os.path.isdir(p["releases"]):
        for name in os.listdir(p["releases"]):
            marker = os.path.join(p["releases"], name, "COMPLETE")
            if os.path.isfile(marker):
                found.append((read_state(p, name)["activated"], os.stat(marker).st_mtime, name))
    return [name for _, _, name in sorted(found)]


def op_probe(args):
    p = paths(args["root"])
    if args.get("lock"):      # after a lost connection: wait until the device-side op is done
        take_lock(p)
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
    done = completed_releases(p)
    return {"python": list(sys.version_info[:3]), "python_path": sys.executable,
            "arch": platform.machine(), "hostname": platform.node(), "euid": os.geteuid(),
            "has_pip": has_pip, "has_venv": has_venv, "libc": libc_version(),
            "has_sudo": shutil.which("sudo") is not None,
            "jetson": os.path.exists(os.path.join(args["root"], "etc", "nv_tegra_release")),
            "current": current_release(p), "releases": done,
            "states": dict((name, read_state(p, name)) for name in done),
            "cache": [c for c in cache if len(c) == 64]}


def boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _holder(fd):
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        return json.loads(os.read(fd, 4096).decode("utf-8") or "{}")
    except (OSError, ValueError):
        return {}


def pid_alive(pid):
    """Whether a process with this id exists (also used by workspace.py on the workstation)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _break_stale(holder, stale_s):
    """True when the holder was a deploy on this boot that ran past `stale_s` (hung): it is
    stopped (TERM, then KILL). Every step is crash-safe, so stopping it loses nothing."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or holder.get("boot_id") != boot_id() or not pid_alive(pid):
        return False
    if time.time() - holder.get("started", time.time()) < stale_s:
        return False
    log("lock: breaking a stale lock of pid %d (op %s, %.0f s old)" % (
        pid, holder.get("op"), time.time() - holder["started"]))
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return True
        until = time.monotonic() + wait
        while time.monotonic() < until and pid_alive(pid):
            time.sleep(0.1)
    return True


def take_lock(p):
    """One deploy at a time per device. A holder still at work is waited for (`lock_wait` s:
    e.g. a deploy whose workstation was killed finishing its health gate); a holder that has
    run longer than `lock_stale` s is stopped and the lock taken over."""
    os.makedirs(p["releases"], exist_ok=True)
    for key in ("cache", "incoming"):
        os.makedirs(p[key], mode=0o700, exist_ok=True)
        os.chmod(p[key], 0o700)
    wait, stale_s = float(ARGS.get("lock_wait", 0)), float(ARGS.get("lock_stale", 3600))
    fd = os.open(p["lock"], os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError:
            holder = _holder(fd)
            if _break_stale(holder, stale_s):
                continue
            if time.monotonic() >= deadline:
                raise Failure("another deploy holds %s (pid %s, op %s, %s s old); it ends by "
                              "itself, and one older than %.0f s is broken" % (
                                  p["lock"], holder.get("pid"), holder.get("op"),
                                  int(time.time() - holder.get("started", time.time())), stale_s))
            time.sleep(0.3)
    record = json.dumps({"pid": os.getpid(), "boot_id": boot_id(), "started": time.time(),
                         "op": ARGS.get("op")}).encode()
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, record)
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


def install_drop_in(p, release, service, use_sudo):
    """The board's drop-in (its GPU, camera, CSI and VideoCore nodes), rendered by the new
    release's own `edgeagent unit` from its profile; True if it changed and systemd must reload.
    The shipped unit allows no board-specific device: without this a Jetson's GPU is blocked."""
    rendered = os.path.join(release, "board-drop-in")
    code, out = run([os.path.join(release, "venv", "bin", "edgeagent"), "unit",
                     "--config", os.path.join(release, "config.yaml"), "--output", rendered], 120)
    if code != 0:
        raise Failure("the new release's `edgeagent unit` failed (exit %d): %s"
                      % (code, out.strip()[-800:]))
    source = os.path.join(rendered, "50-board.conf")
    folder = os.path.join(p["units"], service + ".service.d")
    dest = os.path.join(folder, "50-board.conf")
    if os.path.isfile(dest) and sha256_of(dest) == sha256_of(source):
        return False
    if os.access(p["units"], os.W_OK) or os.geteuid() == 0:
        os.makedirs(folder, exist_ok=True)
        with open(source, "rb") as f:
            write_file(dest, f.read(), 0o644)
    else:
        privileged(["install", "-D", "-m", "0644", source, dest], use_sudo)
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


# ---- release states ------------------------------------------------------------------------

def read_state(p, name):
    """A release's record: state, failures (health gates failed), activated / healthy order."""
    state = {"state": UNKNOWN, "failures": 0, "activated": 0, "healthy": 0, "why": ""}
    try:
        state.update(read_json(os.path.join(p["releases"], name, "state.json")))
    except (OSError, ValueError):
        pass
    return state


def write_state(p, name, **changes):
    state = read_state(p, name)
    state.update(changes)
    write_file(os.path.join(p["releases"], name, "state.json"), json.dumps(state, sort_keys=True))
    return state


def next_sequence(p):
    try:
        with open(p["sequence"]) as f:
            value = int(f.read().strip() or 0) + 1
    except (OSError, ValueError):
        value = 1
    write_file(p["sequence"], "%d\n" % value)
    return value


def newest_healthy(p, exclude=()):
    found = [(read_state(p, n)["healthy"], n) for n in completed_releases(p) if n not in exclude]
    healthy = [(order, n) for order, n in found if read_state(p, n)["state"] == HEALTHY]
    return max(healthy)[1] if healthy else None


# ---- the health gate -----------------------------------------------------------------------

def unit_properties(service):
    code, out = run(["systemctl", "show", service, "-p", "ActiveState", "-p", "SubState", "-p",
                     "MainPID", "-p", "NRestarts", "-p", "Result", "-p", "ExecMainStatus",
                     "-p", "Type"], 30, env=_service_env())
    props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    props.setdefault("ActiveState", "unknown" if code == 0 else "exit %d" % code)
    return props


def _describe_unit(service, props):
    return "service %s is %s (%s, result %s, exit status %s)" % (
        service, props.get("ActiveState"), props.get("SubState", "?"), props.get("Result", "?"),
        props.get("ExecMainStatus", "?"))


def gate(args, restart=True):
    """(True, "") once the service is ready, else (False, why). With Type=notify (the shipped
    unit) systemd counts the agent active only after its READY=1, which it sends once the backend
    is loaded and a first frame went through inference: that is the readiness used here. A start
    that fails, a unit that is failed or waiting to auto-restart ends the wait at once. Other unit
    types have no readiness: they must stay active with one main PID for `settle` seconds."""
    health, service = args["health"], args["service"]
    deadline = time.monotonic() + float(health["timeout"])
    if restart:
        try:
            code, out = privileged(["systemctl", "restart", service], args["sudo"],
                                   timeout=max(1.0, deadline - time.monotonic()), check=False)
        except Failure as exc:
            return False, str(exc)
        if code != 0:
            props = unit_properties(service)
            return False, "systemctl restart %s failed (exit %d: %s); %s" % (
                service, code, out.strip()[-300:], _describe_unit(service, props))
    seen, stable_since = None, None
    while True:
        props = unit_properties(service)
        state, sub = props.get("ActiveState"), props.get("SubState")
        if state == "failed" or sub == "auto-restart" or (state == "inactive" and not restart):
            return False, _describe_unit(service, props)
        if state == "active":
            mark = (props.get("MainPID"), props.get("NRestarts"))
            if mark != seen:
                seen, stable_since = mark, time.monotonic()
            ready = props.get("Type") == "notify" or \
                time.monotonic() - stable_since >= float(health.get("settle", 0))
            if ready and stable_since < time.monotonic() - float(health["interval"]) / 2:
                return True, ""
        if time.monotonic() >= deadline:
            return False, "not ready within %.0f s: %s" % (float(health["timeout"]),
                                                           _describe_unit(service, props))
        time.sleep(float(health["interval"]))


def validate(p, name):
    """The release's own `edgeagent validate` on its config, before it may become current."""
    release = os.path.join(p["releases"], name)
    tool = os.path.join(release, "venv", "bin", "edgeagent")
    if not os.access(tool, os.X_OK):
        raise NotRunnable("release %s has no %s; it cannot run" % (name, tool))
    code, out = run([tool, "validate", "--config", os.path.join(release, "config.yaml")], 300)
    if code != 0:
        lines = [line for line in out.strip().splitlines() if line.strip()]
        raise NotRunnable("release %s cannot run its pipeline here (`edgeagent validate` exit "
                          "%d): %s" % (name, code, lines[-1] if lines else "no output"))


# ---- switching -----------------------------------------------------------------------------

def systemctl(args, *verbs):
    privileged(["systemctl"] + list(verbs), args["sudo"])


def switch(p, name, args):
    release = os.path.join(p["releases"], name)
    if not os.path.isfile(os.path.join(release, "COMPLETE")):
        raise Failure("release %s is not complete; refusing to switch to it" % name)
    reload_needed = install_unit(p, release, args["service"], args["sudo"])
    reload_needed = install_drop_in(p, release, args["service"], args["sudo"]) or reload_needed
    link_config(p)
    atomic_symlink(os.path.join("releases", name), p["current"])
    write_state(p, name, activated=next_sequence(p))
    if reload_needed:
        systemctl(args, "daemon-reload")
    return reload_needed


def bring_up(p, name, args):
    """Switch to `name`, restart and gate it; record the verdict. (ok, why)."""
    switch(p, name, args)
    if not args["restart"]:
        return True, ""
    ok, why = gate(args)
    if ok and args.get("pending"):     # the workstation's own checks decide (op confirm)
        write_state(p, name, state=UNKNOWN, why="gate passed; waiting for the workstation's checks")
    elif ok:
        write_state(p, name, state=HEALTHY, healthy=next_sequence(p), why="")
    else:
        failures = read_state(p, name)["failures"] + 1
        write_state(p, name, state=FAILED, failures=failures, why=why[-500:])
    return ok, why


def restore(p, args, failed):
    """After `failed` did not come up: back to the newest healthy release, gated too."""
    target = newest_healthy(p, exclude=(failed,))
    if target is None:
        return {"restored": None, "restored_ok": False,
                "restored_why": "no healthy release to go back to"}
    ok, why = bring_up(p, target, args)
    return {"restored": target, "restored_ok": ok, "restored_why": why}


def check_privileges(args):
    """Before anything changes: can we run systemctl as root here?"""
    if args["restart"] and os.geteuid() != 0 and args["sudo"] and shutil.which("sudo") is None:
        raise Failure("`systemctl restart` needs root and this device has no sudo: log in as root, "
                      "install sudo with a NOPASSWD rule for systemctl and install, or pass "
                      "--no-sudo if user %s may run systemctl itself; nothing was changed" % _user())


def check_attempts(p, name, args):
    state = read_state(p, name)
    limit = int(args.get("attempts", 2))
    if state["state"] == FAILED and state["failures"] >= limit and not args.get("force"):
        raise Refused("release %s failed its health gate %d times (last: %s); it is not activated "
                      "again: fix it, or pass --force" % (name, state["failures"], state["why"]))


def activate_checked(p, name, args):
    """Bring `name` up; if it fails, restore the newest healthy release. The result dict."""
    previous = current_release(p)
    ok, why = bring_up(p, name, args)
    result = {"previous": previous, "release": name, "ok": ok, "why": why}
    if not ok:
        result.update(restore(p, args, name))
    result["current"] = current_release(p)
    result["state"] = read_state(p, result["current"])["state"] if result["current"] else None
    return result


def op_activate(args):
    p = paths(args["root"])
    take_lock(p)
    check_privileges(args)
    check_attempts(p, args["release"], args)
    if args.get("validate", True):
        try:
            validate(p, args["release"])
        except NotRunnable as exc:
            write_state(p, args["release"], state=FAILED, why=str(exc)[-500:])
            raise
    return activate_checked(p, args["release"], args)


def op_rollback(args):
    """By hand: to `to`, or to the newest healthy release other than current; gated, and if it
    does not come up, the newest healthy release is restored (the one we left, if it was)."""
    p = paths(args["root"])
    take_lock(p)
    check_privileges(args)
    now = current_release(p)
    target = args.get("to") or newest_healthy(p, exclude=(now,))
    if not target:
        raise Failure("no healthy release other than %s under %s to roll back to" % (
            now, p["releases"]))
    check_attempts(p, target, args)
    return activate_checked(p, target, args)


def op_verify(args):
    """`unchanged`: the release is already current; is it up and healthy? If not, restart it
    (gated); if that fails, back to the newest healthy release."""
    p = paths(args["root"])
    take_lock(p)
    check_privileges(args)
    name = current_release(p)
    if not args["restart"]:
        return {"release": name, "current": name, "ok": True, "why": "", "restarted": False,
                "state": read_state(p, name)["state"]}
    props = unit_properties(args["service"])
    if props.get("ActiveState") == "active" and read_state(p, name)["state"] == HEALTHY:
        return {"release": name, "current": name, "ok": True, "why": "", "restarted": False,
                "state": HEALTHY}
    if props.get("ActiveState") == "active":     # up, but never gated (interrupted deploy)
        ok, why = gate(args, restart=False)
        if ok:
            write_state(p, name, state=HEALTHY, healthy=next_sequence(p), why="")
            return {"release": name, "current": name, "ok": True, "why": "", "restarted": False,
                    "state": HEALTHY}
    result = activate_checked(p, name, args)
    result.update(restarted=True, found=_describe_unit(args["service"], props))
    return result


def op_confirm(args):
    """The workstation's own checks (--health-cmd/--health-mqtt) passed or failed."""
    p = paths(args["root"])
    take_lock(p)
    name = args["release"]
    if args["ok"]:
        write_state(p, name, state=HEALTHY, healthy=next_sequence(p), why="")
        return {"release": name, "current": current_release(p), "ok": True, "why": ""}
    write_state(p, name, state=FAILED, failures=read_state(p, name)["failures"] + 1,
                why=args["why"][-500:])
    result = {"release": name, "ok": False, "why": args["why"]}
    result.update(restore(p, args, name))
    result["current"] = current_release(p)
    return result


def op_prune(args):
    """Keep the `keep` most recently activated releases, current and the newest healthy one."""
    p = paths(args["root"])
    take_lock(p)
    now = current_release(p)
    done = completed_releases(p)
    keep = set(done[-args["keep"]:]) | {now, newest_healthy(p)}
    keep.discard(None)
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
       "rollback": op_rollback, "verify": op_verify, "confirm": op_confirm, "prune": op_prune}
# These must reach a consistent end (a gated release, or a rollback) even when the workstation
# is gone; the others stop when it goes (what they leave is cleaned up by the next deploy).
FINISH_ALONE = ("activate", "rollback", "verify", "confirm")


def watch_client():
    """Exit when the workstation is gone (ssh closed our stdout): kill children, stop."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLERR | select.POLLHUP)
    while True:
        if poller.poll(500):
            for child in list(CHILDREN):
                try:
                    child.kill()
                except OSError:
                    pass
            os._exit(EXIT_CLIENT_GONE)


def say(line):
    try:
        sys.stdout.write("\n" + line + "\n")
        sys.stdout.flush()
    except (OSError, ValueError):
        pass   # nobody listens any more; the device's state is what counts


def main():
    op = sys.argv[1] if len(sys.argv) > 1 else ""
    try:
        ARGS.update(json.loads(sys.argv[2]), op=op)
        if op in FINISH_ALONE:
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
        else:
            threading.Thread(target=watch_client, daemon=True).start()
        result = OPS[op](ARGS)
    except (Failure, OSError, ValueError, KeyError, IndexError,
            subprocess.TimeoutExpired) as exc:
        # JSON keeps a multi-line message (a traceback tail) on the one last line.
        say(ERROR + json.dumps("%s: %s" % (type(exc).__name__, exc)))
        sys.exit(getattr(exc, "code", EXIT_FAILURE))
    say(RESULT + json.dumps(result))


if __name__ == "__main__":
    main()
