"""Device profiles: which backends to try on a board, with what options, and where its sensors are.

A profile is a YAML file in device_profiles/ (schema: docs/profiles.md). It is read once,
validated strictly (unknown keys are errors) and frozen. select_profile() picks one for a
DeviceInfo: a forced name wins, then EDGEAGENT_PROFILE, then the best match rule.
"""

import fnmatch
import logging
import os
from dataclasses import dataclass, field  # novm: the dataclasses backport serves 3.6
from types import MappingProxyType
from typing import Any, Dict, List, Mapping, Optional, Tuple


from . import resources
from ..checks import (need_bool, need_choice, need_int, need_list, need_mapping, need_str,
                     reject_unknown, where)
from ..backends.spec import BACKEND_KEYS, as_dict, options_class_of, profile_options
from ..board.device import ROOT_ENV, DeviceInfo, detect_device
from ..errors import ConfigError
from ..board.sandbox import Sandbox, sandbox_from_dict
from .yamlio import read_yaml

log = logging.getLogger(__name__)

ENV_VAR = "EDGEAGENT_PROFILE"
TOP_KEYS = ("name", "description", "match", "backends", "camera", "thermal", "gpu_load",
            "throttled", "sandbox")
MATCH_KEYS = ("model", "compatible", "arch")
CAMERA_KEYS = ("default_source", "width", "height", "fps")


# How strongly a rule kind identifies a board: a model string beats a compatible entry,
# which beats a bare CPU architecture.
_MODEL, _COMPATIBLE, _ARCH = 3, 2, 1


@dataclass(frozen=True)
class CameraDefaults:
    """The camera a board most likely has, used when a pipeline names no source."""

    default_source: str = "v4l2:///dev/video0"
    width: int = 1280
    height: int = 720
    fps: int = 30


@dataclass(frozen=True)
class MatchRules:
    """Shell-style patterns (fnmatch, case-sensitive) for a DeviceInfo's fields."""

    model: Tuple[str, ...] = ()
    compatible: Tuple[str, ...] = ()
    arch: Tuple[str, ...] = ()

    def score(self, device: DeviceInfo) -> Optional[Tuple[Tuple[int, int], str]]:
        """(strength, reason) of the best rule matching the device, or None.

        Among compatible hits the entry nearer the front of the device's list is more specific
        (device-tree order), so it scores higher.
        """
        if any(fnmatch.fnmatchcase(device.model, p) for p in self.model):
            return (_MODEL, 0), "model %r" % device.model
        for index, entry in enumerate(device.compatible):
            if any(fnmatch.fnmatchcase(entry, p) for p in self.compatible):
                return (_COMPATIBLE, -index), "compatible %r" % entry
        if any(fnmatch.fnmatchcase(device.arch, p) for p in self.arch):
            return (_ARCH, 0), "architecture %r" % device.arch
        return None


@dataclass(frozen=True)
class Profile:
    """One board's settings, validated and read-only."""

    name: str
    description: str
    path: str
    match: MatchRules
    backends: Tuple[str, ...]                       # order to try, keys of BACKEND_KEYS
    backend_options: Mapping[str, Any]   # key -> the backend's frozen OPTIONS_CLASS instance
    camera: CameraDefaults = field(default_factory=CameraDefaults)
    thermal: Tuple[Tuple[str, Tuple[str, ...]], ...] = ()   # (reported name, zone types to try)
    gpu_load: Tuple[str, ...] = ()                  # candidate load files, per-mille, first wins
    throttled: bool = False                         # ask `vcgencmd get_throttled` (Raspberry Pi)
    sandbox: Sandbox = field(default_factory=Sandbox)   # what the systemd unit must allow

    def typed_options(self, backend_key: str) -> Any:
        """One backend's options as its frozen class, checked when the profile was read (the
        service hands this to the backend as it is); a backend not listed gets its defaults.
        Each backend owns its table (OPTION_SPECS: default, check, doc line)."""
        if backend_key not in BACKEND_KEYS:
            raise ValueError("unknown backend key %r; known: %s" % (
                backend_key, ", ".join(BACKEND_KEYS)))
        chosen = self.backend_options.get(backend_key)
        return chosen if chosen is not None else options_class_of(backend_key)()

    def options(self, backend_key: str) -> Dict[str, Any]:
        """A fresh dict of every option of one backend (for display and CLI overrides)."""
        return as_dict(self.typed_options(backend_key))

    @property
    def thermal_zones(self) -> Dict[str, Tuple[str, ...]]:
        return dict(self.thermal)


def list_profiles() -> List[str]:
    """Names of the shipped profiles, sorted."""
    return resources.list_names("device_profiles")


def load_profile(name_or_path: str) -> Profile:
    """A shipped profile by name, or any profile file by a path ending in .yaml/.yml."""
    if name_or_path.endswith((".yaml", ".yml")):
        path = name_or_path
        if not os.path.isfile(path):
            raise ConfigError("%s: device profile file not found" % path)
    else:
        # A bare name only: "../x" must not reach outside device_profiles/.
        is_name = "/" not in name_or_path and os.sep not in name_or_path
        path = (resources.find("device_profiles", name_or_path) if is_name else None) or ""
        if not path:
            raise ConfigError("device profile %r not found; available profiles: %s "
                              "(or give a path to a .yaml file)" % (
                                  name_or_path, ", ".join(list_profiles()) or "none"))
    return profile_from_dict(_read_yaml(path), path)


def select_profile(device: DeviceInfo, forced: Optional[str] = None,
                   env: Optional[Mapping[str, str]] = None) -> Tuple[Profile, str]:
    """The profile for a device and why: forced (CLI/config) > EDGEAGENT_PROFILE > best match."""
    env = os.environ if env is None else env
    if forced:
        return load_profile(forced), "forced by config/--profile"
    from_env = env.get(ENV_VAR, "").strip()
    if from_env:
        try:
            return load_profile(from_env), "forced by %s" % ENV_VAR
        except ConfigError as exc:
            raise ConfigError("%s=%s: %s" % (ENV_VAR, from_env, exc.args[0])) from None
    return _best_match(device, [load_profile(name) for name in list_profiles()])


def profile_for_this_board(requested: Optional[str] = None, root: Optional[str] = None
                           ) -> Tuple[DeviceInfo, Profile, str]:
    """(device, profile, reason): detect this board (under $EDGEAGENT_ROOT for tests) and pick
    its profile, the one detect-then-select every command shares."""
    device = detect_device(root if root is not None else os.environ.get(ROOT_ENV, "/"))
    profile, reason = select_profile(device, requested)
    return device, profile, reason


def _best_match(device: DeviceInfo, profiles: List[Profile]) -> Tuple[Profile, str]:
    scored = []
    for profile in profiles:
        hit = profile.match.score(device)
        if hit:
            scored.append((hit[0], profile, hit[1]))
    if not scored:
        raise ConfigError(
            "no device profile matches model %r, compatible %s, architecture %r; set %s or "
            "--profile to one of: %s" % (device.model, list(device.compatible) or "none",
                                         device.arch, ENV_VAR, ", ".join(p.name for p in profiles)))
    # Highest strength first; equal strengths fall back to the name so the choice is stable.
    scored.sort(key=lambda item: (-item[0][0], -item[0][1], item[1].name))
    strength, profile, why = scored[0]
    ties = [s[1].name for s in scored[1:] if s[0] == strength]
    if ties:
        log.warning("device matches profiles %s equally well; using %s",
                    ", ".join([profile.name] + ties), profile.name)
    if strength[0] == _ARCH:
        return profile, "no board matched; %s by architecture" % profile.name
    return profile, "%s matches %s" % (why, profile.name)


def _read_yaml(path: str) -> Mapping:
    return need_mapping(read_yaml(path), path, "")


def profile_from_dict(data: Mapping, path: str) -> Profile:
    """Validate a parsed profile; every problem names the file, the key and what is allowed."""
    reject_unknown(data, TOP_KEYS, path)
    for required in ("name", "description", "backends"):
        if required not in data:
            raise ConfigError("%s: missing key; a profile needs %s" % (
                where(path, required), ", ".join(("name", "description", "backends"))))
    name = need_str(data["name"], path, "name")
    stem = os.path.splitext(os.path.basename(path))[0]
    if name != stem:
        raise ConfigError("%s = %r: must equal the file name %r (rename one of them)" % (
            where(path, "name"), name, stem))
    backends, options = _backends(data["backends"], path)
    return Profile(
        name=name, description=need_str(data["description"], path, "description"), path=path,
        match=_match_rules(data.get("match") or {}, path), backends=backends,
        backend_options=MappingProxyType(options),
        camera=_camera(data.get("camera") or {}, path),
        thermal=_thermal(data.get("thermal") or {}, path),
        gpu_load=_str_tuple(data["gpu_load"], path, "gpu_load") if "gpu_load" in data else (),
        throttled=need_bool(data.get("throttled", False), path, "throttled"),
        sandbox=sandbox_from_dict(data.get("sandbox") or {}, path))


def _match_rules(data: Any, path: str) -> MatchRules:
    data = need_mapping(data, path, "match")
    reject_unknown(data, MATCH_KEYS, path, "match.")
    return MatchRules(**{key: _str_tuple(data[key], path, "match." + key)
                         for key in MATCH_KEYS if key in data})


def _backends(items: Any, path: str) -> Tuple[Tuple[str, ...], Dict[str, Any]]:
    """`- tflite` or `- tflite: {threads: 4}` items, each backend at most once."""
    if not isinstance(items, list) or not items:
        raise ConfigError("%s = %r: must be a non-empty list of backends (%s)" % (
            where(path, "backends"), items, ", ".join(BACKEND_KEYS)))
    order = []  # type: List[str]
    options = {}  # type: Dict[str, Any]
    for index, item in enumerate(items):
        key_path = "backends[%d]" % index
        if isinstance(item, str):
            key, given = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            key, given = next(iter(item.items()))
        else:
            raise ConfigError("%s = %r: must be a backend name or {name: {options}}" % (
                where(path, key_path), item))
        need_choice(key, BACKEND_KEYS, path, key_path)
        if key in order:
            raise ConfigError("%s = %r: listed twice" % (where(path, key_path), key))
        order.append(key)
        options[key] = profile_options(key, need_mapping(given or {}, path, key_path + "." + key),
                                       path, key_path + "." + key + ".")
    return tuple(order), options


def _camera(data: Any, path: str) -> CameraDefaults:
    data = need_mapping(data, path, "camera")
    reject_unknown(data, CAMERA_KEYS, path, "camera.")
    defaults = CameraDefaults()
    return CameraDefaults(
        default_source=need_str(data.get("default_source", defaults.default_source), path,
                                "camera.default_source"),
        width=need_int(data.get("width", defaults.width), path, "camera.width", lo=1),
        height=need_int(data.get("height", defaults.height), path, "camera.height", lo=1),
        fps=need_int(data.get("fps", defaults.fps), path, "camera.fps", lo=1))


def _thermal(data: Any, path: str) -> Tuple[Tuple[str, Tuple[str, ...]], ...]:
    """{reported name: zone type or [types to try]}; empty means every zone under its type."""
    data = need_mapping(data, path, "thermal")
    zones = []
    for name, types in data.items():
        key = "thermal." + str(name)
        need_str(name, path, key)
        zones.append((name, _str_tuple(types, path, key)))
    return tuple(zones)


def _str_tuple(value: Any, path: str, key: str) -> Tuple[str, ...]:
    """A string or a non-empty list of non-empty strings."""
    items = need_list([value] if isinstance(value, str) else value, path, key, str)
    if not items:
        raise ConfigError("%s: must not be empty (leave the key out instead)" % where(path, key))
    for item in items:
        need_str(item, path, key)
    return tuple(items)
