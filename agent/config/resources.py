"""Where shipped data lives: the repo checkout (pipelines/, device_profiles/, models/ beside agent/)
or, in an installed wheel, agent/resources/<kind>/ (pyproject maps the folders there)."""

import os
from typing import List, Optional

_AGENT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))   # the agent package
KINDS = ("pipelines", "device_profiles", "models")


def data_dir(kind: str) -> str:
    """The folder holding shipped files of one kind; the checkout wins over an installed copy."""
    if kind not in KINDS:
        raise ValueError("unknown data kind %r" % kind)
    for candidate in (os.path.join(os.path.dirname(_AGENT), kind),
                      os.path.join(_AGENT, "resources", kind)):
        if os.path.isdir(candidate):
            return candidate
    return os.path.join(_AGENT, "resources", kind)


def list_names(kind: str, suffix: str = ".yaml") -> List[str]:
    """Names (file name without suffix) of the shipped files of one kind, sorted."""
    folder = data_dir(kind)
    if not os.path.isdir(folder):
        return []
    return sorted(f[:-len(suffix)] for f in os.listdir(folder) if f.endswith(suffix))


def find(kind: str, name: str, suffix: str = ".yaml") -> Optional[str]:
    """Path of a shipped file by name, or None."""
    path = os.path.join(data_dir(kind), name + suffix)
    return path if os.path.isfile(path) else None
