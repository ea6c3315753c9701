"""Reading YAML files with errors that say which file and which line is wrong."""

from typing import Any

import yaml

from ..errors import ConfigError


def read_yaml(path: str) -> Any:
    try:
        with open(path, "rb") as f:     # bytes: YAML is UTF-8 (or -16/-32 with a BOM), not locale
            return yaml.safe_load(f)
    except OSError as why:
        raise ConfigError("%s: cannot read (%s)" % (path, why.strerror or why))
    except yaml.reader.ReaderError as why:
        raise ConfigError("%s: not UTF-8 text (byte %s at offset %d: %s); save it as UTF-8" % (
            path, _byte(why.character), why.position, why.reason))
    except yaml.YAMLError as why:
        mark = getattr(why, "problem_mark", None)
        at = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
        problem = getattr(why, "problem", None) or str(why).splitlines()[0]
        raise ConfigError("%s: not valid YAML%s: %s" % (path, at, problem))


def _byte(character) -> str:
    if isinstance(character, int):
        return "0x%02x" % character
    if isinstance(character, bytes):
        return "0x%02x" % character[0] if character else "?"
    return "U+%04X" % ord(character) if isinstance(character, str) and character else "?"
