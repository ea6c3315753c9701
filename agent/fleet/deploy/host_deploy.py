"""One host's deploy: probe, upload what is missing, install a release, switch, health-gate,
roll back on failure, prune. Each step is one ssh call to remote_helper."""

import logging
import posixpath
import time
from typing import Any, Dict, Optional, Tuple

from ... import wire
from .artifacts import Bundle, Hasher, for_device, plan_release
from .errors import ConnectionLost, DeployError, HostKeyError, NotRunnable, Refused
from .health import MqttStatusWatch, wait_healthy
from .outcome import (DOWN, FAILED, DeployOptions, HostResult, describe,  # noqa: F401 - re-exported
                      device_line, plan_text, split_by_cache, use_site_packages)
from .inventory import Host
from .ssh import SshHost, SshSettings

log = logging.getLogger(__name__)

MIN_PYTHON = (3, 6)


class HostDeploy:
    """Deploys one host; run() never raises for host failures, it returns them."""

    def __init__(self, host: Host, bundle: Optional[Bundle], options: DeployOptions, ssh: SshSettings,
                 staging: str, hasher: Hasher, control_name: str) -> None:
        self.host = host
        self.bundle = bundle
        self.opts = options
        self.ssh = SshHost(host, ssh, control_name)
        self.staging = staging
        self.hasher = hasher
        self.started = time.monotonic()
        self.old = None  # type: Optional[str]
        self.new = None  # type: Optional[str]

    def log(self, fmt: str, *args: Any) -> None:
        log.info("%s: " + fmt, self.host.name, *args)

    def result(self, result: str, message: str = "", **extra: Any) -> HostResult:
        self.log("%s%s", result, " (%s)" % message if message else "")
        return HostResult(self.host.name, self.old, self.new, result,
                          time.monotonic() - self.started, message, **extra)

    def run(self, rollback: bool = False) -> HostResult:
        try:
            return self._rollback_by_hand() if rollback else self._deploy()
        except HostKeyError as exc:
            return self.result("aborted", str(exc))
        except Refused as exc:
            return self.result("refused", str(exc))
        except NotRunnable as exc:
            return self.result("not runnable", str(exc))
        except DeployError as exc:
            return self.result("failed", str(exc))
        finally:
            self.ssh.close()

    def probe(self) -> Dict[str, Any]:
        probe = self.ssh.helper("probe", {"root": self.host.remote_root}, timeout=60)
        self.old = probe["current"]
        version = tuple(probe["python"])
        self.log("probe: python %s (%s) %s, current release %s", ".".join(map(str, version)),
                 probe["python_path"], probe["arch"], self.old or "none")
        if version < MIN_PYTHON:
            raise DeployError("%s: python %s is too old; the agent needs >= %s (set python: in "
                              "the inventory to another interpreter)" % (
                                  self.host.name, ".".join(map(str, version)),
                                  ".".join(map(str, MIN_PYTHON))))
        if self.opts.restart and self.opts.sudo and probe["euid"] != 0 and \
                not probe.get("has_sudo", True):
            raise DeployError("%s: user %s is not root and the device has no sudo, so systemctl "
                              "cannot restart the service: log in as root, install sudo with a "
                              "NOPASSWD rule for systemctl and install, or pass --no-sudo if the "
                              "user may run systemctl itself; nothing was changed"
                              % (self.host.name, self.host.user or "(ssh default)"))
        if not probe["has_venv"]:
            raise DeployError("%s: %s has no venv module; install it (apt install python3-venv)"
                              % (self.host.name, probe["python_path"]))
        return probe

    def _deploy(self) -> HostResult:
        probe = self.probe()
        bundle, extras = for_device(self.bundle, self.host, probe, self.opts.extras)
        site = use_site_packages(self.opts.site_packages, probe, bundle)
        plan = plan_release(self.host, bundle, site, self.staging, self.hasher, extras)
        self.new = plan.name
        missing, present = split_by_cache(plan, set(probe["cache"]))
        sent = tuple(f.dest for f in missing)
        have = tuple(f.dest for f in present)
        if self.opts.dry_run:
            return self.result("planned", plan_text(plan, missing, present, self.old),
                               uploaded=sent, reused=have)
        if self.old == plan.name:
            return self.verify(plan.name, probe, have)
        self.upload(missing)
        common = self.helper_args()
        installed = self.ssh.helper("install", dict(common, release=plan.name, wheel=plan.wheel,
                                                    site_packages=site,
                                                    extras=list(extras),
                                                    venv_key=plan.venv_key,
                                                    system_pip=probe["has_pip"],
                                                    files=describe(plan.files),
                                                    credentials=describe(plan.credentials)))
        device = installed["detect"]
        self.log("installed %s%s; detect: %s", plan.name, " (reused)" if installed["reused"] else "",
                 device_line(device))
        extra = {"uploaded": sent, "reused": have, "device": device}
        return self.activate("activate", dict(common, release=plan.name), probe, extra)

    def _rollback_by_hand(self) -> HostResult:
        probe = self.probe()
        if self.opts.dry_run:
            target = _newest_healthy(probe, exclude=self.old)
            return self.result("planned", "would switch %s back to %s" % (
                self.old or "none", target or "(no healthy release: nothing)"))
        return self.activate("rollback", dict(self.helper_args(), to=None), probe, {},
                             by_hand=True)

    def verify(self, release: str, probe: Dict[str, Any], have: Tuple[str, ...]) -> HostResult:
        """Already current: the device checks it is up and healthy, and restarts it if not."""
        done = self.gated_call("verify", self.helper_args(), probe)
        if done["ok"] and not done.get("restarted"):
            return self.result("unchanged", "release %s is already current; service active, %s"
                               % (release, done.get("state")), reused=have)
        if done["ok"]:
            return self.result("restarted", "release %s was current but %s: restarted, healthy"
                               % (release, done.get("found", "not healthy")), reused=have)
        return self.after_failure(done, {"reused": have}, "was current but %s; restart: %s"
                                  % (done.get("found", "not healthy"), done["why"]))

    def helper_args(self) -> Dict[str, Any]:
        h = self.opts.health
        return {"root": self.host.remote_root, "service": h.service, "sudo": self.opts.sudo,
                "restart": self.opts.restart, "attempts": self.opts.attempts,
                "force": self.opts.force, "validate": self.opts.validate,
                "lock_wait": self.opts.lock_wait_s, "lock_stale": self.opts.lock_stale_s,
                "health": {"timeout": h.timeout_s, "settle": h.settle_s, "interval": h.interval_s}}

    def upload(self, missing: Tuple[Any, ...]) -> None:
        if not missing:
            self.log("upload: nothing new")
            return
        cache = posixpath.join(self.host.remote_root, "opt/edgeagent/cache")
        incoming = posixpath.join(cache, "incoming")
        # The cache may hold credentials: only its owner may look inside.
        done = self.ssh.run(["sh", "-c", 'umask 022 && mkdir -p "$1/incoming" && chmod 700 "$1" '
                             '"$1/incoming"', "sh", cache])
        if done.returncode != 0:
            raise DeployError("%s: cannot create %s: %s" % (
                self.host.name, incoming, done.stderr.decode("utf-8", "replace").strip()))
        self.ssh.upload([(f.local, posixpath.join(incoming, f.sha256)) for f in missing])
        self.log("upload: %d files, %d bytes: %s", len(missing), sum(f.size for f in missing),
                 ", ".join(f.dest for f in missing))

    def gated_call(self, op: str, args: Dict[str, Any], probe: Dict[str, Any]) -> Dict[str, Any]:
        """An op that switches and gates on the device. The device finishes it alone if the
        connection drops; then we reconnect and read what it decided."""
        timeout = 4 * self.opts.health.timeout_s + self.opts.lock_wait_s + 300
        try:
            return self.ssh.helper(op, args, timeout=timeout)
        except HostKeyError:
            raise
        except DeployError as exc:
            if not isinstance(exc, ConnectionLost):
                raise
            self.log("connection lost during %s (%s); waiting for the device to finish", op, exc)
            return self.outcome_after_loss(op, args, str(exc))

    def outcome_after_loss(self, op: str, args: Dict[str, Any], why: str) -> Dict[str, Any]:
        wanted = args.get("release")
        deadline = time.monotonic() + args["lock_wait"] + 4 * self.opts.health.timeout_s + 60
        while True:
            try:
                self.ssh.close()
                # the lock is free once the device-side op has finished
                probe = self.ssh.helper("probe", {"root": self.host.remote_root, "lock": True,
                                                 "lock_wait": args["lock_wait"]},
                                        timeout=args["lock_wait"] + 60)
            except DeployError as exc:
                if time.monotonic() > deadline:
                    raise DeployError("%s: connection lost during %s and not back: %s"
                                      % (self.host.name, op, exc))
                time.sleep(2)
                continue
            current = probe["current"]
            state = probe["states"].get(current, {}).get("state") if current else None
            ok = current == (wanted or current) and state == "healthy"
            return {"ok": ok, "current": current, "state": state, "release": wanted or current,
                    "why": "" if ok else "connection lost (%s); the device decided alone" % why,
                    "restored": current if not ok and current != wanted else None,
                    "restored_ok": state == "healthy", "lost": True}

    def activate(self, op: str, args: Dict[str, Any], probe: Dict[str, Any],
                 extra: Dict[str, Any], by_hand: bool = False) -> HostResult:
        watch = self.status_watch(probe)
        try:
            confirm = (watch is not None or bool(self.opts.health.cmd)) and self.opts.restart
            done = self.gated_call(op, dict(args, pending=confirm), probe)
            ready_at = time.monotonic()    # the new process is READY; the old one is gone
            self.new = done.get("release") or self.new
            self.log("%s %s: %s", op, done.get("release"), "ready" if done["ok"] else done["why"])
            if done["ok"] and confirm:
                why = self.health(done["release"], probe, ready_at, watch)
                done = self.ssh.helper("confirm", dict(self.helper_args(), release=done["release"],
                                                       ok=why is None, why=why or ""),
                                       timeout=4 * self.opts.health.timeout_s + 120)
        finally:
            if watch is not None:
                watch.close()
        if not done["ok"]:
            return self.after_failure(done, extra, done["why"],
                                      "failed" if by_hand else "rolled back")
        if by_hand:
            return self.result("rolled back", "now at %s (healthy)" % done["current"], **extra)
        pruned = self.ssh.helper("prune", dict(self.helper_args(), keep=self.opts.keep))
        if pruned["removed"]:
            self.log("pruned %s", ", ".join(pruned["removed"]))
        return self.result("ok", **extra)

    def after_failure(self, done: Dict[str, Any], extra: Dict[str, Any], why: str,
                      label: str = "rolled back") -> HostResult:
        """The new (or rolled-to) release did not come up: say where the device is now."""
        restored = done.get("restored")
        if restored and done.get("restored_ok"):
            return self.result(label, "%s; back on %s (healthy)" % (why, restored), **extra)
        if restored:
            return self.result(DOWN, "%s; AND the restored release %s failed too: %s"
                               % (why, restored, done.get("restored_why")), **extra)
        return self.result(DOWN, "%s; %s" % (why, done.get("restored_why") or
                                            "no healthy release to go back to"), **extra)

    def status_watch(self, probe: Dict[str, Any]) -> Optional[MqttStatusWatch]:
        broker = self.opts.health.mqtt
        if broker is None or not self.opts.restart:
            return None
        prefix = self.host.mqtt.get("prefix", wire.DEFAULT_PREFIX)
        return MqttStatusWatch(broker, prefix, self.host.device_id or probe["hostname"])

    def health(self, release: str, probe: Dict[str, Any], restarted_at: float,
               watch: Optional[MqttStatusWatch]) -> Optional[str]:
        names = {"host": self.host.name, "address": self.host.address, "release": release,
                 "device": self.host.device_id or probe["hostname"]}
        why = wait_healthy(self.opts.health, names, restarted_at, watch)
        self.log("health (workstation checks): %s", why or "ok")
        return why


def _newest_healthy(probe: Dict[str, Any], exclude: Optional[str]) -> Optional[str]:
    healthy = [(s.get("healthy", 0), name) for name, s in probe.get("states", {}).items()
               if s.get("state") == "healthy" and name != exclude]
    return max(healthy)[1] if healthy else None
