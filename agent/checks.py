"""Small validators shared by every YAML reader: they turn bad values into ConfigError
messages that name the file, the key, the value and what is allowed; and `reader`, which takes
a missing key's default from its settings dataclass so each default is written once."""

import reprlib
from dataclasses import MISSING, fields  # novm: the dataclasses backport serves 3.6
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence

from .errors import ConfigError

SHOWN_CHARS = 60          # a message shows this much of a bad value: a 10 MB list stays one line
_SHORT = reprlib.Repr()
_SHORT.maxstring = _SHORT.maxother = SHOWN_CHARS
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = _SHORT.maxset = 8


def shown(value: Any) -> str:
    """repr(value), cut to about SHOWN_CHARS characters ("..." where it was cut)."""
    text = _SHORT.repr(value)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS - 3] + "..."


def where(path: str, key: str) -> str:
    return "%s: %s" % (path, key) if key else path


def reject_unknown(data: Mapping, allowed: Iterable[str], path: str, prefix: str = "") -> None:
    """Unknown keys are errors, never silently ignored: typos must not turn features off."""
    allowed = sorted(allowed)
    for key in data:
        if key not in allowed:
            raise ConfigError("%s: unknown key; allowed keys here: %s" % (
                where(path, prefix + str(key)), ", ".join(allowed)))


def need_mapping(value: Any, path: str, key: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ConfigError("%s = %s: must be a mapping (key: value lines)" % (where(path, key), shown(value)))
    return value


def need_str(value: Any, path: str, key: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError("%s = %s: must be a non-empty string" % (where(path, key), shown(value)))
    return value


def need_bool(value: Any, path: str, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError("%s = %s: must be true or false" % (where(path, key), shown(value)))
    return value


def need_int(value: Any, path: str, key: str, lo: Optional[int] = None,
             hi: Optional[int] = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError("%s = %s: must be an integer" % (where(path, key), shown(value)))
    _check_range(value, path, key, lo, hi)
    return value


def need_number(value: Any, path: str, key: str, lo: Optional[float] = None,
                hi: Optional[float] = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError("%s = %s: must be a number" % (where(path, key), shown(value)))
    _check_range(value, path, key, lo, hi)
    return float(value)


def need_choice(value: Any, choices: Sequence, path: str, key: str) -> Any:
    if value not in choices:
        raise ConfigError("%s = %s: must be one of %s" % (
            where(path, key), shown(value), ", ".join(str(c) for c in choices)))
    return value


def need_list(value: Any, path: str, key: str, item_type: type = str,
              length: Optional[int] = None) -> list:
    if not isinstance(value, list) or not all(
            isinstance(v, item_type) and not isinstance(v, bool) for v in value):
        raise ConfigError("%s = %s: must be a list of %s" % (
            where(path, key), shown(value), item_type.__name__))
    if length is not None and len(value) != length:
        raise ConfigError("%s = %s: must have exactly %d items" % (where(path, key), shown(value), length))
    return value


def _check_range(value, path, key, lo, hi) -> None:
    if lo is not None and value < lo or hi is not None and value > hi:
        bounds = "between %s and %s" % (lo, hi) if hi is not None else ">= %s" % lo
        raise ConfigError("%s = %s: must be %s" % (where(path, key), shown(value), bounds))


# ---- each config default lives once: on its settings dataclass's field; readers take a missing
# key's value from there instead of repeating it in `.get(key, default)`.

def default_of(cls: Any, name: str) -> Any:
    """The default of field `name` of dataclass `cls` (KeyError: no such field or no default)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            if f.default_factory is not MISSING:  # type: ignore
                return f.default_factory()  # type: ignore
            break
    raise KeyError("%s.%s has no default" % (cls.__name__, name))


def reader(section: Mapping, cls: Any) -> Callable[[str], Any]:
    """key -> section[key], or the default of cls's field of that name when the key is absent."""
    def get(key: str) -> Any:
        return section[key] if key in section else default_of(cls, key)
    return get
