"""System readings for the health payload: CPU, memory, temperatures, GPU load, Pi throttling.

Every reading is optional. A file that is missing or garbled, a command that fails or hangs,
leaves its field out of the result and is logged once at debug level; nothing here raises.
``root`` lets tests point at recorded /proc and /sys trees.
"""

import glob
import logging
import os
import re
import shutil
import subprocess
from typing import Callable, Dict, List, Optional, Sequence, Set, Tuple

log = logging.getLogger(__name__)

# argv, timeout in seconds -> stdout; raises OSError / subprocess errors on failure.
CommandRunner = Callable[[Sequence[str], float], str]

VCGENCMD_TIMEOUT_S = 2.0
# Tegra reports -256 °C for a zone whose sensor is off; nothing real reads below this.
_LOWEST_REAL_C = -40.0
# `vcgencmd get_throttled` bits (Raspberry Pi documentation, "get_throttled").
THROTTLE_BITS = (
    (0, "under_voltage_now"), (1, "freq_capped_now"), (2, "throttled_now"),
    (3, "soft_temp_limit_now"), (16, "under_voltage_occurred"), (17, "freq_capped_occurred"),
    (18, "throttled_occurred"), (19, "soft_temp_limit_occurred"),
)
_READ_ERRORS = (OSError, IOError, ValueError, IndexError, UnicodeDecodeError)
_logged = set()  # type: Set[str]


def _debug_once(what: str, fmt: str, *args) -> None:
    """A failing sensor fails every few seconds; say so once, not on every health message."""
    if what not in _logged:
        _logged.add(what)
        log.debug(fmt, *args)


def _read_text(root: str, relative: str) -> str:
    with open(os.path.join(root, relative.lstrip("/")), "r") as handle:
        return handle.read()


class CpuMeter:
    """CPU busy percent between two calls, from the aggregate line of /proc/stat."""

    def __init__(self, root: str = "/") -> None:
        self._root = root
        self._last = None  # type: Optional[Tuple[int, int]]

    def percent(self) -> Optional[float]:
        """Busy % since the previous call; None on the first call or when unreadable."""
        try:
            total, idle = _cpu_times(_read_text(self._root, "proc/stat"))
        except _READ_ERRORS as exc:
            _debug_once("cpu", "sensors: cpu load unavailable: %s", exc)
            return None
        last, self._last = self._last, (total, idle)
        if last is None or total <= last[0]:
            return None
        busy = (total - last[0]) - (idle - last[1])
        return round(100.0 * busy / (total - last[0]), 1)


def _cpu_times(stat: str) -> Tuple[int, int]:
    """(total, idle) jiffies; guest time is already counted in user, so it is left out."""
    fields = stat.splitlines()[0].split()
    if fields[0] != "cpu":
        raise ValueError("first line of /proc/stat is not the cpu total: %r" % fields[0])
    values = [int(v) for v in fields[1:9]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)   # idle + iowait
    return sum(values), idle


def read_memory(root: str = "/") -> Dict[str, int]:
    """{mem_used_mb, mem_total_mb}: used is MemTotal - MemAvailable."""
    try:
        info = {}
        for line in _read_text(root, "proc/meminfo").splitlines():
            key, _, rest = line.partition(":")
            if rest.strip():
                info[key] = int(rest.split()[0])
        available = info.get("MemAvailable")
        if available is None:   # kernels before 3.14
            available = info["MemFree"] + info.get("Buffers", 0) + info.get("Cached", 0)
        total = info["MemTotal"]
    except _READ_ERRORS + (KeyError,) as exc:
        _debug_once("memory", "sensors: memory unavailable: %s", exc)
        return {}
    return {"mem_used_mb": (total - available) // 1024, "mem_total_mb": total // 1024}


def read_temperatures(zones: Sequence[Tuple[str, Sequence[str]]] = (),
                      root: str = "/") -> Dict[str, float]:
    """°C per zone. With ``zones`` ((name, [zone types to try]), ...) only those, renamed;
    without, every readable zone under its own type name."""
    found = _thermal_zones(root)
    if not zones:
        return {name: temp for name, temp in found}
    by_type = {}  # type: Dict[str, float]
    for name, temp in found:
        by_type.setdefault(name.lower(), temp)
    temps = {}
    for name, types in zones:
        for zone_type in types:
            if zone_type.lower() in by_type:
                temps[name] = by_type[zone_type.lower()]
                break
    return temps


def _zone_number(zone_dir: str) -> int:
    return int(re.sub(r"\D", "", os.path.basename(zone_dir)) or 0)


def _thermal_zones(root: str) -> List[Tuple[str, float]]:
    pattern = os.path.join(root, "sys/class/thermal/thermal_zone*")
    dirs = sorted(glob.glob(pattern), key=_zone_number)
    zones = []  # type: List[Tuple[str, float]]
    seen = set()  # type: Set[str]
    for zone_dir in dirs:
        try:
            zone_type = _read_text(zone_dir, "type").strip()
            celsius = round(int(_read_text(zone_dir, "temp").strip()) / 1000.0, 1)
        except _READ_ERRORS as exc:
            _debug_once("thermal:" + zone_dir, "sensors: %s unreadable: %s", zone_dir, exc)
            continue
        if celsius < _LOWEST_REAL_C:
            _debug_once("thermal-off:" + zone_dir, "sensors: %s reads %s C (sensor off); skipped",
                        zone_dir, celsius)
            continue
        name = zone_type if zone_type not in seen else "%s.%s" % (
            zone_type, os.path.basename(zone_dir)[len("thermal_zone"):])
        seen.add(zone_type)
        zones.append((name, celsius))
    return zones


def read_gpu_load(paths: Sequence[str], root: str = "/") -> Optional[float]:
    """GPU busy % from the first readable Jetson load file (which counts per mille)."""
    for path in paths:
        try:
            permille = int(_read_text(root, path).strip())
        except _READ_ERRORS:
            continue
        return round(permille / 10.0, 1)
    if paths:
        _debug_once("gpu", "sensors: no GPU load file readable under %s among %s",
                    root, list(paths))
    return None


def run_command(argv: Sequence[str], timeout: float) -> str:
    """Run a tool without a shell; stdout as text. Raises when missing, failing or too slow."""
    if shutil.which(argv[0]) is None:
        raise OSError("%s: not installed" % argv[0])
    proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            universal_newlines=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, list(argv), out, err)
    return out


def parse_throttled(text: str) -> Dict[str, object]:
    """'throttled=0x50005' -> {raw: '0x50005', under_voltage_now: True, ...}."""
    match = re.search(r"throttled=(0x[0-9a-fA-F]+|\d+)", text)
    if not match:
        raise ValueError("unexpected vcgencmd output: %r" % text.strip())
    raw = match.group(1)
    value = int(raw, 0)
    flags = {"raw": raw}  # type: Dict[str, object]
    for bit, name in THROTTLE_BITS:
        flags[name] = bool(value >> bit & 1)
    return flags


def read_throttled(runner: CommandRunner = run_command) -> Optional[Dict[str, object]]:
    try:
        return parse_throttled(runner(["vcgencmd", "get_throttled"], VCGENCMD_TIMEOUT_S))
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        _debug_once("throttled", "sensors: vcgencmd get_throttled unavailable: %s", exc)
        return None


def read_system(thermal: Sequence[Tuple[str, Sequence[str]]] = (),
                gpu_load: Sequence[str] = (), throttled: bool = False, root: str = "/",
                cpu_meter: Optional[CpuMeter] = None,
                runner: CommandRunner = run_command) -> Dict[str, object]:
    """The `system` part of the health payload; fields that could not be read are absent."""
    system = {}  # type: Dict[str, object]
    cpu = cpu_meter.percent() if cpu_meter is not None else None
    if cpu is not None:
        system["cpu_percent"] = cpu
    system.update(read_memory(root))
    temps = read_temperatures(thermal, root)
    if temps:
        system["temps_c"] = temps
    load = read_gpu_load(gpu_load, root)
    if load is not None:
        system["gpu_load"] = load
    flags = read_throttled(runner) if throttled else None
    if flags is not None:
        system["throttled"] = flags
    return system


class SystemSensors:
    """read_system() bound to one profile's sensor settings, keeping the CPU meter between reads."""

    def __init__(self, thermal: Sequence[Tuple[str, Sequence[str]]] = (),
                 gpu_load: Sequence[str] = (), throttled: bool = False, root: str = "/",
                 runner: CommandRunner = run_command) -> None:
        self._thermal = tuple(thermal)
        self._gpu_load = tuple(gpu_load)
        self._throttled = throttled
        self._root = root
        self._runner = runner
        self._cpu = CpuMeter(root)
        self._cpu.percent()   # start the interval now, so the first read() has a CPU figure

    @classmethod
    def from_profile(cls, profile, root: str = "/",
                     runner: CommandRunner = run_command) -> "SystemSensors":
        """``profile`` is an agent.config.profiles.Profile (thermal, gpu_load, throttled)."""
        return cls(profile.thermal, profile.gpu_load, profile.throttled, root, runner)

    def read(self) -> Dict[str, object]:
        return read_system(self._thermal, self._gpu_load, self._throttled, self._root,
                           self._cpu, self._runner)
