"""How a backend declares the options a device profile may give it: name, default, check and
the line docs/profiles.md shows. Each backend module owns its tuple (OPTION_SPECS) and the frozen
class made from it (OPTIONS_CLASS). profiles.py parses a profile's options into that class once
(profile_options); the backend takes the instance as it is and parses only a mapping (a tool's,
a test's). So a default or check is written in one place and runs once; adding an option is one
Option entry plus its docs/profiles.md row.

Kept free of runtime imports: profiles validate on boards where the runtime is missing.
"""

import dataclasses  # novm: the dataclasses backport serves 3.6
import importlib
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Any, Callable, Dict, Mapping, Optional, Sequence, Tuple, Union

from ..checks import need_bool, need_int, need_list, need_str, reject_unknown, where
from ..errors import ConfigError

# The one list of backend keys (agent.backends.REGISTRY and profiles read it); the order is
# only for listing.
BACKEND_KEYS = ("tensorrt", "onnxruntime", "tflite")
# key -> module holding its OPTION_SPECS (light modules: no runtime, no numpy work)
SPEC_MODULES = tuple(zip(BACKEND_KEYS, ("agent.backends.tensorrt.options",
                                        "agent.backends.onnxruntime", "agent.backends.tflite")))


@dataclass(frozen=True)
class BackendContext:
    """What only the service (or a tool) knows, handed to every backend's from_options the same
    way; each backend takes the parts it uses. input_size is (width, height) like pipelines say."""

    where: str                                    # profile/pipeline path for error messages
    cache_dir: Optional[str] = None               # <state_dir>/engines
    input_size: Optional[Tuple[int, int]] = None  # (width, height) or None
    progress: Optional[Callable] = None           # TensorRT build progress callback


def context_of(where: Union[str, BackendContext]) -> BackendContext:
    """A bare path (tests, tools that know nothing more) as a context."""
    return where if isinstance(where, BackendContext) else BackendContext(where)


@dataclass(frozen=True)
class Option:
    name: str
    default: Any
    check: Callable[[Any, str, str], Any]      # (value, file, key) -> the value, or ConfigError
    doc: str                                   # one line for docs/profiles.md


def option_specs(key: str) -> Tuple[Option, ...]:
    return importlib.import_module(dict(SPEC_MODULES)[key]).OPTION_SPECS


def options_class_of(key: str) -> type:
    """The backend's frozen options class (OPTIONS_CLASS beside its OPTION_SPECS)."""
    return importlib.import_module(dict(SPEC_MODULES)[key]).OPTIONS_CLASS


def defaults(specs: Sequence[Option]) -> Dict[str, Any]:
    return {o.name: o.default for o in specs}


def options_class(name: str, specs: Sequence[Option], module: str) -> type:
    """A frozen dataclass with one field per option, defaulting to the option's default; SPECS
    on the class keeps the checks for parse(). Defaults must be immutable (tuples, not lists)."""
    cls = dataclasses.make_dataclass(
        name, [(o.name, Any, dataclasses.field(default=o.default)) for o in specs], frozen=True)
    cls.SPECS = tuple(specs)
    cls.__module__ = module
    return cls


def parse(cls: type, given: Any, path: str, prefix: str, base: Any = None) -> Any:
    """An instance of cls: given as it is when it already is one (checked when it was made),
    else a mapping whose keys are checked and the rest taken from base (or the defaults)."""
    if isinstance(given, cls):
        return given
    reject_unknown(given, [o.name for o in cls.SPECS], path, prefix)
    chosen = {}
    for option in cls.SPECS:
        if option.name in given:
            chosen[option.name] = option.check(given[option.name], path, prefix + option.name)
    return dataclasses.replace(base if base is not None else cls(), **chosen)


def as_dict(options: Any) -> Dict[str, Any]:
    """A fresh dict of an options instance (tuples as lists, for display and CLI overrides)."""
    return {f.name: list(v) if isinstance(v, tuple) else v
            for f, v in ((f, getattr(options, f.name)) for f in dataclasses.fields(options))}


def profile_options(key: str, given: Mapping, path: str, prefix: str) -> Any:
    """A profile's options for one backend, checked once into its OPTIONS_CLASS. The class holds
    only the table's keys, so what the service supplies (the engine cache...) is refused."""
    return parse(options_class_of(key), given, path, prefix)


# ---- checks the option tables share ----------------------------------------------------------

def boolean(value: Any, path: str, key: str) -> bool:
    return need_bool(value, path, key)


def count(value: Any, path: str, key: str) -> int:
    """An integer >= 0 (threads: 0 lets the runtime decide)."""
    return need_int(value, path, key, lo=0)


def positive(value: Any, path: str, key: str) -> int:
    return need_int(value, path, key, lo=1)


def names(value: Any, path: str, key: str) -> Tuple[str, ...]:
    """A string or a non-empty list of non-empty strings, stored frozen (Profile.options hands
    out a list)."""
    if isinstance(value, tuple):
        value = list(value)
    items = need_list([value] if isinstance(value, str) else value, path, key, str)
    if not items:
        raise ConfigError("%s: must not be empty (leave the key out instead)" % where(path, key))
    for item in items:
        need_str(item, path, key)
    return tuple(items)


def doc_rows() -> Tuple[str, ...]:
    """The option table of docs/profiles.md, one row per option (a test keeps them equal)."""
    rows = []
    for key, _ in SPEC_MODULES:
        for index, option in enumerate(option_specs(key)):
            rows.append("| %s | `%s` | %s | `%s` |" % (
                "`%s`" % key if index == 0 else "", option.name, option.doc,
                _yaml(option.default)))
    return tuple(rows)


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[%s]" % ", ".join(str(v) for v in value)
    return str(value)
