"""Reading YAML files with errors that say which file and which line is wrong."""

from typing import Any

import yaml

from .errors import ConfigError


def read_yaml(path: str) -> Any:
    try:
        with open(path) as f:
            return yaml.safe_load(f)
    except OSError as why:
        raise ConfigError("%s: cannot read (%s)" % (path, why.strerror or why))
    except yaml.YAMLError as why:
        mark = getattr(why, "problem_mark", None)
        at = " (line %d, column %d)" % (mark.line + 1, mark.column + 1) if mark else ""
        problem = getattr(why, "problem", None) or str(why).splitlines()[0]
        raise ConfigError("%s: not valid YAML%s: %s" % (path, at, problem))
