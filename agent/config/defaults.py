"""Each config default lives once: on its settings dataclass's field. Readers take a missing key's
value from there instead of repeating it in `.get(key, default)`."""

from dataclasses import MISSING, fields  # novm: the dataclasses backport serves 3.6
from typing import Any, Callable, Mapping


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
