"""What board this is: read once at start from the device tree, /proc and the L4T release file.

Every file is optional (containers hide /proc/device-tree, x86 has none), so detection never
raises; what cannot be read is left None. ``root`` lets tests point at recorded files.
"""

import logging
import os
import platform
import re
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Dict, Optional, Tuple

log = logging.getLogger(__name__)

FAMILIES = ("jetson", "raspberrypi", "generic")

# Exact L4T -> JetPack releases (NVIDIA's JetPack archive). A revision not listed falls back
# to the coarse family below, never to a guessed minor version.
_JETPACK_BY_L4T = {
    "32.4.3": "4.4", "32.4.4": "4.4.1", "32.5.0": "4.5", "32.5.1": "4.5.1", "32.5.2": "4.5.1",
    "32.6.1": "4.6", "32.7.1": "4.6.1", "32.7.2": "4.6.2", "32.7.3": "4.6.3",
    "32.7.4": "4.6.4", "32.7.5": "4.6.5", "32.7.6": "4.6.6",
    "35.1.0": "5.0.2", "35.2.1": "5.1", "35.3.1": "5.1.1", "35.4.1": "5.1.2",
    "35.5.0": "5.1.3", "35.6.0": "5.1.4", "35.6.1": "5.1.5",
    "36.2.0": "6.0 DP", "36.3.0": "6.0", "36.4.0": "6.1", "36.4.3": "6.2", "36.4.4": "6.2.1",
}
_JETPACK_BY_MAJOR_MINOR = {"32.6": "4.6.x", "32.7": "4.6.x"}
_JETPACK_BY_MAJOR = {"35": "5.x", "36": "6.x"}

_L4T_LINE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+(?:\.\d+)*)")
_TEGRA_SOC = re.compile(r"^nvidia,(tegra\d+)$")
_BCM_SOC = re.compile(r"^brcm,(bcm\d+)$")


@dataclass(frozen=True)
class DeviceInfo:
    """The board the agent runs on, as far as it could be read."""

    model: str                       # device-tree model, else cpuinfo Model/model name
    family: str                      # one of FAMILIES
    arch: str                        # platform.machine(): aarch64, x86_64, armv7l
    soc: Optional[str]               # tegra210/186/194/234, bcm2837/2711/2712; None if unknown
    l4t_release: Optional[str]       # "R32.7.1" from /etc/nv_tegra_release
    jetpack: Optional[str]           # "4.6.1", or "4.6.x"/"5.x"/"6.x" for unlisted revisions
    cpu_count: Optional[int]         # processors listed in /proc/cpuinfo (online cores)
    mem_total_mb: Optional[int]      # MemTotal from /proc/meminfo
    python: str                      # platform.python_version() of this interpreter
    compatible: Tuple[str, ...] = ()  # device-tree compatible list, most specific first

    def to_json(self) -> dict:
        return {"model": self.model, "family": self.family, "arch": self.arch, "soc": self.soc,
                "l4t_release": self.l4t_release, "jetpack": self.jetpack,
                "cpu_count": self.cpu_count, "mem_total_mb": self.mem_total_mb,
                "python": self.python, "compatible": list(self.compatible)}


ROOT_ENV = "EDGEAGENT_ROOT"     # tests point detection at recorded board files


def detect_device(root: str = "/", machine: Optional[str] = None) -> DeviceInfo:
    """Read the board description under ``root``; ``machine`` overrides platform.machine()."""
    dt_model = _strip_nul(_read(root, "proc/device-tree/model"))
    compatible = _split_nul(_read(root, "proc/device-tree/compatible"))
    cpuinfo = _read(root, "proc/cpuinfo") or ""
    l4t_release = parse_l4t_release(_read(root, "etc/nv_tegra_release"))
    cpu_fields = _cpuinfo_fields(cpuinfo)
    model = dt_model or cpu_fields.get("Model") or cpu_fields.get("model name") or "unknown"
    family = _family(model, compatible, l4t_release)
    return DeviceInfo(
        model=model, family=family, arch=machine or platform.machine(),
        soc=_soc(compatible), l4t_release=l4t_release, jetpack=jetpack_for(l4t_release),
        cpu_count=_cpu_count(cpuinfo), mem_total_mb=_mem_total_mb(_read(root, "proc/meminfo")),
        python=platform.python_version(), compatible=compatible)


def parse_l4t_release(text: Optional[str]) -> Optional[str]:
    """'# R32 (release), REVISION: 7.1, GCID: ...' -> 'R32.7.1'; None if absent or unreadable."""
    match = _L4T_LINE.search(text or "")
    if not match:
        return None
    return "R%s.%s" % (match.group(1), match.group(2))


def jetpack_for(l4t_release: Optional[str]) -> Optional[str]:
    """JetPack version of an L4T release ('R32.7.1' -> '4.6.1'); coarse for unlisted revisions."""
    if not l4t_release:
        return None
    version = l4t_release.lstrip("R")
    parts = version.split(".")
    if len(parts) == 2:           # 'REVISION: 3' style; the table uses three parts
        parts.append("0")
    exact = _JETPACK_BY_L4T.get(".".join(parts))
    if exact:
        return exact
    return _JETPACK_BY_MAJOR_MINOR.get(".".join(parts[:2])) or _JETPACK_BY_MAJOR.get(parts[0])


def _read(root: str, relative: str) -> Optional[str]:
    path = os.path.join(root, relative)
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (OSError, IOError) as exc:
        log.debug("device: %s unreadable: %s", path, exc)
        return None


def _strip_nul(text: Optional[str]) -> str:
    # Device-tree strings end in NUL; some boards add a newline too.
    return (text or "").replace("\x00", "").strip()


def _split_nul(text: Optional[str]) -> Tuple[str, ...]:
    return tuple(part.strip() for part in (text or "").split("\x00") if part.strip())


def _cpuinfo_fields(cpuinfo: str) -> Dict[str, str]:
    """First value of each 'key : value' line (Model, Hardware, model name)."""
    fields = {}  # type: Dict[str, str]
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields and value.strip():
            fields[key.strip()] = value.strip()
    return fields


def _cpu_count(cpuinfo: str) -> Optional[int]:
    count = sum(1 for line in cpuinfo.splitlines() if re.match(r"processor\s*:", line))
    return count or None


def _mem_total_mb(meminfo: Optional[str]) -> Optional[int]:
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", meminfo or "", re.MULTILINE)
    return int(match.group(1)) // 1024 if match else None


def _family(model: str, compatible: Tuple[str, ...], l4t_release: Optional[str]) -> str:
    if l4t_release or "jetson" in model.lower() or any(_TEGRA_SOC.match(c) for c in compatible):
        return "jetson"
    if model.startswith("Raspberry Pi") or any(c.startswith("raspberrypi,") for c in compatible):
        return "raspberrypi"
    return "generic"


def _soc(compatible: Tuple[str, ...]) -> Optional[str]:
    # The compatible list names the SoC; cpuinfo's "Hardware" says BCM2835 on every Pi, so
    # it is not used.
    for entry in compatible:
        match = _TEGRA_SOC.match(entry) or _BCM_SOC.match(entry)
        if match:
            return match.group(1)
    return None
