"""JSON Schemas of the MQTT payloads (docs/mqtt.md): result, status, health, command,
command_reply. The agent does not validate at run time; tests and dashboards do.

    load_schema("result") -> dict
"""

import json
import os
from typing import Dict

SCHEMA_DIR = os.path.dirname(os.path.abspath(__file__))
NAMES = ("result", "status", "health", "command", "command_reply")


def schema_path(name: str) -> str:
    if name not in NAMES:
        raise ValueError("no schema %r; known: %s" % (name, ", ".join(NAMES)))
    return os.path.join(SCHEMA_DIR, name + ".json")


def load_schema(name: str) -> Dict:
    """The JSON Schema (draft 2020-12) of one payload, as a dict."""
    with open(schema_path(name), "r", encoding="utf-8") as handle:
        return json.load(handle)
