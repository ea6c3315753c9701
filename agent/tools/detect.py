"""`edgeagent detect`: the device, the profile chosen and why, and each backend's availability."""

from typing import Dict, Optional

from .. import backends
from ..config.profiles import profile_for_this_board


def detect_report(forced_profile: Optional[str] = None, config_path: Optional[str] = None) -> Dict:
    if config_path and not forced_profile:
        from ..config.agent_config import load_config
        forced_profile = load_config(config_path).profile
    device, profile, reason = profile_for_this_board(forced_profile)
    available = []
    for key, why in backends.availability():
        entry = {"name": key, "available": why is None, "in_profile": key in profile.backends}
        if why is None:
            entry["version"] = _version(key)
        else:
            entry["reason"] = why
        available.append(entry)
    order = [b for b in profile.backends if b in [a["name"] for a in available if a["available"]]]
    from .. import __version__
    return {"edgeagent": __version__, "device": device.to_json(),
            "profile": {"name": profile.name, "reason": reason, "path": profile.path,
                        "backends": list(profile.backends)},
            "backends": available, "would_use": order[0] if order else None}


def _version(key: str) -> Optional[str]:
    try:
        return backends.runtime_version(key)
    except Exception as why:  # a version probe must not break detect
        return "unknown (%s)" % why


def format_report(report: Dict) -> str:
    device, profile = report["device"], report["profile"]
    lines = ["device:   %s (%s, %s)" % (device["model"], device["family"], device["arch"]),
             "profile:  %s (%s)" % (profile["name"], profile["reason"])]
    if device.get("jetpack"):
        lines.append("jetpack:  %s (L4T %s)" % (device["jetpack"], device["l4t_release"]))
    lines.append("backends (profile order: %s):" % ", ".join(profile["backends"]))
    for b in report["backends"]:
        state = "available  %s" % (b.get("version") or "") if b["available"] else \
            "unavailable: %s" % b["reason"]
        lines.append("  %-12s %s" % (b["name"], state))
    lines.append("would use: %s" % (report["would_use"] or "nothing (no backend of the profile "
                                                           "can run here)"))
    return "\n".join(lines)
