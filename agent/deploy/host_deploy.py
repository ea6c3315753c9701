"""One host's deploy: probe, upload what is missing, install a release, switch, health-gate,
roll back on failure, prune. Each step is one ssh call to remote_helper."""

import logging
import posixpath
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .artifacts import Bundle, Hasher, ReleasePlan, for_device, plan_release
from .errors import DeployError, HostKeyError
from .health import HealthSettings, MqttStatusWatch, wait_healthy
from .inventory import Host
from .ssh import SshHost, SshSettings

log = logging.getLogger(__name__)

MIN_PYTHON = (3, 6)
FAILED = ("failed", "rolled back", "aborted")


@dataclass(frozen=True)
class DeployOptions:
    keep: int = 3
    restart: bool = True
    sudo: bool = True
    site_packages: str = "auto"          # auto | yes | no
    extras: Tuple[str, ...] = ()         # pip extras of the agent, e.g. ("opencv", "onnx")
    dry_run: bool = False
    health: HealthSettings = HealthSettings()


@dataclass(frozen=True)
class HostResult:
    host: str
    old: Optional[str]
    new: Optional[str]
    result: str            # ok | unchanged | planned | rolled back | failed | aborted | skipped
    seconds: float
    message: str = ""
    uploaded: Tuple[str, ...] = ()     # release paths sent this time
    reused: Tuple[str, ...] = ()       # already on the device (same sha256)
    device: Dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.result in FAILED

    def to_json(self) -> Dict[str, Any]:
        return {"host": self.host, "old": self.old, "new": self.new, "result": self.result,
                "seconds": round(self.seconds, 3), "message": self.message,
                "uploaded": list(self.uploaded), "reused": list(self.reused),
                "device": self.device}


def use_site_packages(choice: str, probe: Dict[str, Any], bundle: Bundle) -> bool:
    """auto: Jetson always (TensorRT, pycuda and GStreamer OpenCV are system-only), else only
    when no dependency wheels were given (then the deps must come from the system)."""
    if choice != "auto":
        return choice == "yes"
    return bool(probe["jetson"]) or not bundle.deps


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
        missing, present = _split_by_cache(plan, set(probe["cache"]))
        sent = tuple(f.dest for f in missing)
        have = tuple(f.dest for f in present)
        if self.opts.dry_run:
            return self.result("planned", _plan_text(plan, missing, present, self.old),
                               uploaded=sent, reused=have)
        if self.old == plan.name:
            return self.result("unchanged", "release %s is already current" % plan.name,
                               reused=have)
        self.upload(missing)
        common = self.helper_args()
        installed = self.ssh.helper("install", dict(common, release=plan.name, wheel=plan.wheel,
                                                    site_packages=site,
                                                    extras=list(extras),
                                                    venv_key=plan.venv_key,
                                                    system_pip=probe["has_pip"],
                                                    files=_describe(plan.files),
                                                    credentials=_describe(plan.credentials)))
        device = installed["detect"]
        self.log("installed %s%s; detect: %s", plan.name, " (reused)" if installed["reused"] else "",
                 _device_line(device))
        return self.activate(plan, probe, sent, have, device)

    def _rollback_by_hand(self) -> HostResult:
        probe = self.probe()
        if self.opts.dry_run:
            return self.result("planned", "would switch %s back to the release before it"
                               % (self.old or "none"))
        restarted_at = time.monotonic()
        switched = self.ssh.helper("rollback", dict(self.helper_args(), to=None))
        self.new = switched["current"]
        self.log("current -> %s (rollback by hand)", self.new)
        why = self.health(self.new, probe, restarted_at, None)
        return self.result("failed" if why else "rolled back", why or "")

    def helper_args(self) -> Dict[str, Any]:
        return {"root": self.host.remote_root, "service": self.opts.health.service,
                "sudo": self.opts.sudo, "restart": self.opts.restart}

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

    def activate(self, plan: ReleasePlan, probe: Dict[str, Any], sent: Tuple[str, ...],
                 have: Tuple[str, ...], device: Dict[str, Any]) -> HostResult:
        watch = self.status_watch(probe)
        try:
            restarted_at = time.monotonic()
            self.ssh.helper("activate", dict(self.helper_args(), release=plan.name))
            self.log("current -> %s%s", plan.name, ", service restarted" if self.opts.restart else "")
            why = self.health(plan.name, probe, restarted_at, watch)
        finally:
            if watch is not None:
                watch.close()
        extra = {"uploaded": sent, "reused": have, "device": device}
        if why is not None:
            return self.roll_back(why, extra)
        pruned = self.ssh.helper("prune", dict(self.helper_args(), keep=self.opts.keep))
        if pruned["removed"]:
            self.log("pruned %s", ", ".join(pruned["removed"]))
        return self.result("ok", **extra)

    def status_watch(self, probe: Dict[str, Any]) -> Optional[MqttStatusWatch]:
        broker = self.opts.health.mqtt
        if broker is None or not self.opts.restart:
            return None
        prefix = self.host.mqtt.get("prefix", "edgeagent")
        topic = "%s/%s/status" % (prefix, self.host.device_id or probe["hostname"])
        return MqttStatusWatch(broker, topic)

    def health(self, release: str, probe: Dict[str, Any], restarted_at: float,
               watch: Optional[MqttStatusWatch]) -> Optional[str]:
        if not self.opts.restart:
            return None
        names = {"host": self.host.name, "address": self.host.address, "release": release,
                 "device": self.host.device_id or probe["hostname"]}
        why = wait_healthy(self.ssh, self.opts.health, names, restarted_at, watch)
        self.log("health: %s", why or "ok")
        return why

    def roll_back(self, why: str, extra: Dict[str, Any]) -> HostResult:
        if not self.old:
            return self.result("failed", "%s; no earlier release to go back to" % why, **extra)
        self.ssh.helper("rollback", dict(self.helper_args(), to=self.old))
        self.log("rolled back: current -> %s", self.old)
        return self.result("rolled back", why, **extra)


def _split_by_cache(plan: ReleasePlan, cached: set) -> Tuple[Tuple[Any, ...], Tuple[Any, ...]]:
    missing, seen = [], set()
    for f in plan.files + plan.credentials:
        if f.sha256 not in cached and f.sha256 not in seen:
            missing.append(f)
            seen.add(f.sha256)
    return tuple(missing), tuple(f for f in plan.files + plan.credentials if f not in missing)


def _describe(files: Tuple[Any, ...]) -> list:
    return [{"dest": f.dest, "name": f.dest, "sha256": f.sha256} for f in files]


def _device_line(device: Dict[str, Any]) -> str:
    inner = device.get("device", device)
    bits = [str(inner.get(k)) for k in ("model", "arch") if inner.get(k)]
    if device.get("profile"):
        bits.append("profile %s" % (device["profile"] if isinstance(device["profile"], str)
                                    else device["profile"].get("name", device["profile"])))
    return ", ".join(bits) or "(no device fields)"


def _plan_text(plan: ReleasePlan, missing: Tuple[Any, ...], present: Tuple[Any, ...],
               old: Optional[str]) -> str:
    if old == plan.name:
        return "release %s is already current; nothing to do" % plan.name
    return "would install %s (upload %d files, %d bytes; %d already there), switch %s -> %s, " \
           "restart" % (plan.name, len(missing), sum(f.size for f in missing), len(present),
                        old or "none", plan.name)
