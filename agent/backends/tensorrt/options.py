"""The ``tensorrt`` backend options, validated once into a frozen value.

Profile keys (OPTION_SPECS, parsed once into TrtProfileOptions): precision, workspace_mb,
dla_core, build_on_start.
Keys the service injects: cache_dir, input_size, calibration_dir, calibration_preprocess, progress.
"""

import os
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Any, Callable, Mapping, Optional, Tuple

from .. import spec
from ..spec import Option
from ...checks import need_choice, need_list, need_str, reject_unknown, where
from ...errors import ConfigError
from ...types import FP16, FP32, PRECISIONS


def _precision(value: Any, path: str, key: str) -> str:
    return need_choice(value, PRECISIONS, path, key)


def _dla_core(value: Any, path: str, key: str) -> Optional[int]:
    if isinstance(value, bool) or value not in (None, 0, 1):   # True == 1 in Python
        raise ConfigError("%s = %r: must be null (GPU only), 0 or 1" % (where(path, key), value))
    return value


OPTION_SPECS = (
    Option("precision", FP16, _precision,
           "`fp32`, `fp16`, `int8` (INT8 needs calibration images, see docs/tensorrt.md)"),
    Option("workspace_mb", 256, spec.positive, "builder workspace in MiB, integer >= 1"),
    Option("dla_core", None, _dla_core, "`null` (GPU), `0` or `1` (Xavier/Orin DLA cores)"),
    Option("build_on_start", True, spec.boolean,
           "build a missing engine when the service starts (`false`: use `edgeagent build-engine`)"),
)
PROFILE_KEYS = tuple(o.name for o in OPTION_SPECS)
# a profile's part, made from the table (profiles parse into it once; TrtOptions takes it as is)
TrtProfileOptions = OPTIONS_CLASS = spec.options_class("TrtProfileOptions", OPTION_SPECS, __name__)
INJECTED_KEYS = ("cache_dir", "input_size", "calibration_dir", "calibration_preprocess",
                 "progress")
OPTIONS = PROFILE_KEYS + INJECTED_KEYS
PREFIX = "tensorrt."


def default_cache_dir() -> str:
    """$STATE_DIRECTORY/engines under systemd (StateDirectory=), else ~/.cache/edgeagent/engines."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return os.path.join(state, "engines")
    return os.path.join(os.path.expanduser("~"), ".cache", "edgeagent", "engines")


@dataclass(frozen=True)
class TrtOptions:
    precision: str = FP16
    workspace_mb: int = 256
    dla_core: Optional[int] = None
    build_on_start: bool = True
    cache_dir: str = ""
    input_size: Optional[Tuple[int, int]] = None          # (height, width) for dynamic inputs
    calibration_dir: Optional[str] = None
    calibration_preprocess: Optional[Callable[[Any], Any]] = None
    progress: Optional[Callable[[str, float, str], None]] = None
    where: str = ""                                       # the file the options came from

    @classmethod
    def from_context(cls, options: Any, context) -> "TrtOptions":
        """The profile's options (a TrtProfileOptions, checked when the profile was read; or a
        mapping from a tool, checked here) plus the context's cache_dir, progress and input
        size; the one place (width, height) turns into the builder's (height, width)."""
        context = spec.context_of(context)
        profile = options if isinstance(options, TrtProfileOptions) else None
        merged = {} if profile is not None else dict(options)
        if context.cache_dir and "cache_dir" not in merged:
            merged["cache_dir"] = context.cache_dir
        if context.progress is not None and "progress" not in merged:
            merged["progress"] = context.progress
        if context.input_size is not None and "input_size" not in merged:
            merged["input_size"] = [context.input_size[1], context.input_size[0]]
        return cls.from_options(merged, context.where, profile)

    @classmethod
    def from_options(cls, options: Mapping, path: str,
                     profile: Optional[Any] = None) -> "TrtOptions":
        """options: the injected keys, and the profile's keys too unless `profile` (a checked
        TrtProfileOptions) is given."""
        reject_unknown(options, OPTIONS if profile is None else INJECTED_KEYS, path, PREFIX)
        if profile is None:   # defaults and checks from OPTION_SPECS, the one table
            profile = spec.parse(TrtProfileOptions, {k: v for k, v in options.items()
                                                     if k in PROFILE_KEYS}, path, PREFIX)
        if profile.dla_core is not None and profile.precision == FP32:
            raise ConfigError("%s = fp32: DLA runs fp16 or int8 only; set precision: fp16 "
                              "or dla_core: null" % where(path, PREFIX + "precision"))
        get = options.get
        return cls(
            precision=profile.precision,
            workspace_mb=profile.workspace_mb,
            dla_core=profile.dla_core,
            build_on_start=profile.build_on_start,
            cache_dir=need_str(get("cache_dir") or default_cache_dir(), path,
                               PREFIX + "cache_dir"),
            input_size=_input_size(get("input_size"), path),
            calibration_dir=_optional_str(get("calibration_dir"), path, "calibration_dir"),
            calibration_preprocess=_optional_callable(get("calibration_preprocess"), path,
                                                      "calibration_preprocess"),
            progress=_optional_callable(get("progress"), path, "progress"),
            where=path)


def _input_size(value: Any, path: str) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    if isinstance(value, tuple):
        value = list(value)
    height, width = need_list(value, path, PREFIX + "input_size", int, length=2)
    if height < 1 or width < 1:
        raise ConfigError("%s = %r: height and width must be >= 1" % (
            where(path, PREFIX + "input_size"), value))
    return int(height), int(width)


def _optional_str(value: Any, path: str, key: str) -> Optional[str]:
    return None if value is None else need_str(value, path, PREFIX + key)


def _optional_callable(value: Any, path: str, key: str):
    if value is not None and not callable(value):
        raise ConfigError("%s = %r: must be a function (the service passes it)" % (
            where(path, PREFIX + key), value))
    return value
