"""What a host deploy is told and what it answers: DeployOptions, HostResult and the result
names, plus the pure helpers that plan and describe a release (no ssh, no I/O)."""

from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Tuple

from .artifacts import Bundle, ReleasePlan
from .health import PostSwitchCheck

DOWN = "DOWN"          # the new release failed and no healthy one runs now
FAILED = ("failed", "rolled back", "aborted", "refused", "not runnable", DOWN)


@dataclass(frozen=True)
class DeployOptions:
    keep: int = 3
    restart: bool = True
    sudo: bool = True
    site_packages: str = "auto"          # auto | yes | no
    extras: Tuple[str, ...] = ()         # pip extras of the agent, e.g. ("opencv", "onnx")
    dry_run: bool = False
    health: PostSwitchCheck = PostSwitchCheck()
    attempts: int = 2                    # failed health gates before a release is refused
    force: bool = False                  # activate a refused release anyway
    validate: bool = True                # the release's `edgeagent validate` before the switch
    lock_wait_s: float = 180.0           # wait this long for another deploy on the device
    lock_stale_s: float = 1800.0         # a lock holder older than this is stopped


@dataclass(frozen=True)
class HostResult:
    host: str
    old: Optional[str]
    new: Optional[str]
    result: str   # ok unchanged restarted planned | rolled back failed refused aborted skipped DOWN
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


def split_by_cache(plan: ReleasePlan, cached: set) -> Tuple[Tuple[Any, ...], Tuple[Any, ...]]:
    missing, seen = [], set()
    for f in plan.files + plan.credentials:
        if f.sha256 not in cached and f.sha256 not in seen:
            missing.append(f)
            seen.add(f.sha256)
    return tuple(missing), tuple(f for f in plan.files + plan.credentials if f not in missing)


def describe(files: Tuple[Any, ...]) -> list:
    return [{"dest": f.dest, "name": f.dest, "sha256": f.sha256} for f in files]


def device_line(device: Dict[str, Any]) -> str:
    inner = device.get("device", device)
    bits = [str(inner.get(k)) for k in ("model", "arch") if inner.get(k)]
    if device.get("profile"):
        bits.append("profile %s" % (device["profile"] if isinstance(device["profile"], str)
                                    else device["profile"].get("name", device["profile"])))
    return ", ".join(bits) or "(no device fields)"


def plan_text(plan: ReleasePlan, missing: Tuple[Any, ...], present: Tuple[Any, ...],
               old: Optional[str]) -> str:
    if old == plan.name:
        return "release %s is already current; nothing to do" % plan.name
    return "would install %s (upload %d files, %d bytes; %d already there), switch %s -> %s, " \
           "restart" % (plan.name, len(missing), sum(f.size for f in missing), len(present),
                        old or "none", plan.name)
