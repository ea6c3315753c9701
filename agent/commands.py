"""Remote commands: `<prefix>/<device>/command` JSON {"id", "name", "args"} -> `.../command/reply`
{"id", "ok", "error"?, "result"?}. Off by default; only allow-listed names; every argument is
checked before anything changes. Runs on the MQTT network thread, so handlers only note and wake.
"""

import json
import logging
import re
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

log = logging.getLogger(__name__)

REPLY_SCHEMA = "edgeagent/command-reply/1"
MAX_PAYLOAD_BYTES = 4096
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PIPELINE_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")

# name -> {arg: (type, required)}; anything not listed here is refused
ARGUMENTS = {
    "ping": {},
    "snapshot": {"quality": (int, False)},
    "reload": {},
    "set_pipeline": {"pipeline": (str, True)},
}

Handler = Callable[[Mapping[str, Any]], Optional[Dict[str, Any]]]


class CommandError(Exception):
    """A refused command; the text goes back to the caller in the reply."""


class CommandHandler:
    def __init__(self, handlers: Mapping[str, Handler], reply: Callable[[bytes], None],
                 check_pipeline: Callable[[str], None]) -> None:
        unknown = set(handlers) - set(ARGUMENTS)
        if unknown:
            raise ValueError("handlers for commands not in the allow-list: %s" % sorted(unknown))
        self._handlers = dict(handlers)
        self._reply = reply
        self._check_pipeline = check_pipeline
        self.handled = 0
        self.refused = 0

    def on_message(self, topic: str, payload: bytes) -> None:
        command_id = None
        try:
            command_id, name, args = parse_command(payload)
            self._validate_values(name, args)
            result = self._handlers[name](args)
            self.handled += 1
            reply = {"id": command_id, "ok": True}
            if result is not None:
                reply["result"] = result
            log.info("command %s (%s) done", name, command_id)
        except CommandError as why:
            self.refused += 1
            reply = {"id": getattr(why, "command_id", command_id), "ok": False, "error": str(why)}
            log.info("command refused: %s", why)
        except Exception as why:  # a handler bug must not kill the network thread
            self.refused += 1
            reply = {"id": command_id, "ok": False, "error": "internal error: %s" % type(why).__name__}
            log.exception("command handler failed")
        reply["schema"] = REPLY_SCHEMA
        self._reply(json.dumps(reply, separators=(",", ":")).encode("utf-8"))

    def _validate_values(self, name: str, args: Mapping[str, Any]) -> None:
        if name not in self._handlers:
            raise CommandError("command %r is not enabled on this device" % name)
        if name == "snapshot" and "quality" in args and not 10 <= args["quality"] <= 100:
            raise CommandError("snapshot: args.quality must be between 10 and 100")
        if name == "set_pipeline":
            pipeline = args["pipeline"]
            if not _PIPELINE_NAME.match(pipeline):
                raise CommandError("set_pipeline: args.pipeline must be the name of a shipped "
                                   "pipeline (lowercase letters, digits, - and _)")
            try:
                self._check_pipeline(pipeline)
            except Exception as why:  # ConfigError and friends: say why, change nothing
                raise CommandError("set_pipeline: %s" % why)


def parse_command(payload: bytes) -> Tuple[Optional[str], str, Dict[str, Any]]:
    """(id, name, args) of a well-formed command; CommandError otherwise."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError("payload of %d bytes is over the %d byte limit" % (
            len(payload), MAX_PAYLOAD_BYTES))
    try:
        message = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CommandError("payload is not UTF-8 JSON")
    if not isinstance(message, dict):
        raise CommandError("payload must be a JSON object {\"id\", \"name\", \"args\"}")
    command_id = message.get("id")
    if not isinstance(command_id, str) or not _ID.match(command_id):
        raise CommandError("id must be a string of 1-64 letters, digits or . _ : -")
    try:
        name, args = _name_and_args(message)
    except CommandError as why:
        why.command_id = command_id       # the reply still names the command it refuses
        raise
    return command_id, name, args


def _name_and_args(message: Mapping[str, Any]) -> Tuple[str, Dict[str, Any]]:
    extra = set(message) - {"id", "name", "args"}
    if extra:
        raise CommandError("unknown fields %s; allowed: id, name, args" % sorted(extra)[:5])
    name = message.get("name")
    if not isinstance(name, str) or name not in ARGUMENTS:
        shown = name[:64] if isinstance(name, str) else type(name).__name__
        raise CommandError("unknown command %r; allowed: %s" % (shown, ", ".join(sorted(ARGUMENTS))))
    args = message.get("args")
    args = {} if args is None else args
    if not isinstance(args, dict):
        raise CommandError("args must be a JSON object")
    _check_args(name, args)
    return name, args


def _check_args(name: str, args: Mapping[str, Any]) -> None:
    spec = ARGUMENTS[name]
    for key in args:
        if key not in spec:
            raise CommandError("%s: unknown argument %r; allowed: %s" % (
                name, key[:64], ", ".join(sorted(spec)) or "none"))
    for key, (kind, required) in spec.items():
        if key not in args:
            if required:
                raise CommandError("%s: args.%s is required" % (name, key))
            continue
        value = args[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise CommandError("%s: args.%s must be %s" % (
                name, key, "an integer" if kind is int else "a string"))
