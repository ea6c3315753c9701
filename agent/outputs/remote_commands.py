"""Remote commands: `<prefix>/<device>/command` JSON {"id", "name", "args"} -> `.../command/reply`
{"id", "ok", "error"?, "result"?}. Off by default; only allow-listed names; every argument is
checked before anything changes. Runs on the MQTT network thread, so handlers only note and wake.

Hostile payloads (random bytes, deep nesting, huge or wrongly typed values) get an error reply
and one log line, never a traceback; refusals are logged at most REFUSAL_LOG_BURST a minute, so
whoever may publish on the command topic cannot flood the journal.
"""

import json
import logging
import re
import time
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ..wire import REPLY_SCHEMA

log = logging.getLogger(__name__)

MAX_PAYLOAD_BYTES = 4096
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_PIPELINE_ARG = re.compile(r"^[A-Za-z0-9_/][A-Za-z0-9_./-]{0,254}$")
REFUSAL_LOG_BURST = 10          # refusal log lines per minute at most
_CHANGES = ("reload", "set_pipeline")     # logged at INFO when done; the rest at DEBUG

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
                 check_pipeline: Callable[[str], Optional[str]]) -> None:
        # check_pipeline(value) raises when set_pipeline may not use it; it may return what to
        # load instead (a resolved path), else None
        unknown = set(handlers) - set(ARGUMENTS)
        if unknown:
            raise ValueError("handlers for commands not in the allow-list: %s" % sorted(unknown))
        self._handlers = dict(handlers)
        self._reply = reply
        self._check_pipeline = check_pipeline
        self.handled = 0
        self.refused = 0
        self._log_window = (0.0, 0)      # (start of the minute, refusals logged in it)

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
            log.log(logging.INFO if name in _CHANGES else logging.DEBUG, "command %s (%s) done",
                    name, command_id)
        except CommandError as why:
            self.refused += 1
            reply = {"id": getattr(why, "command_id", command_id), "ok": False, "error": str(why)}
            self._log_refusal("command refused: %s", why)
        except Exception as why:  # a handler bug must not kill the network thread
            self.refused += 1
            reply = {"id": command_id, "ok": False, "error": "internal error: %s" % type(why).__name__}
            self._log_refusal("command handler failed: %s: %s", type(why).__name__, why)
        reply["schema"] = REPLY_SCHEMA
        self._reply(json.dumps(reply, separators=(",", ":")).encode("utf-8"))

    def _log_refusal(self, message: str, *values) -> None:
        now = time.monotonic()
        start, count = self._log_window
        if now - start >= 60.0:
            if count > REFUSAL_LOG_BURST:
                log.warning("%d more commands refused in the last minute (not logged one by one)",
                            count - REFUSAL_LOG_BURST)
            start, count = now, 0
        count += 1
        self._log_window = (start, count)
        if count <= REFUSAL_LOG_BURST:
            log.warning(message, *values)

    def _validate_values(self, name: str, args: Dict[str, Any]) -> None:
        if name not in self._handlers:
            raise CommandError("command %r is not enabled on this device" % name)
        if name == "snapshot" and "quality" in args and not 10 <= args["quality"] <= 100:
            raise CommandError("snapshot: args.quality must be between 10 and 100")
        if name == "set_pipeline":
            pipeline = args["pipeline"]
            if not _PIPELINE_ARG.match(pipeline) or ".." in pipeline.split("/"):
                raise CommandError("set_pipeline: args.pipeline must be a pipeline name (letters, "
                                   "digits, - and _)")
            try:
                resolved = self._check_pipeline(pipeline)
            except CommandError:
                raise
            except Exception as why:  # ConfigError and friends: say why, change nothing
                raise CommandError("set_pipeline: %s" % getattr(why, "detail", why))
            if resolved is not None:
                args["pipeline"] = resolved


def parse_command(payload: bytes) -> Tuple[Optional[str], str, Dict[str, Any]]:
    """(id, name, args) of a well-formed command; CommandError otherwise."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandError("payload of %d bytes is over the %d byte limit" % (
            len(payload), MAX_PAYLOAD_BYTES))
    if not isinstance(payload, (bytes, bytearray)):
        raise CommandError("payload must be bytes")
    try:
        message = json.loads(payload.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError):
        raise CommandError("payload is not UTF-8 JSON")
    except RecursionError:
        raise CommandError("payload is nested too deeply")
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


def _no_duplicates(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise CommandError("a key appears twice in one object: %r" % sorted(
            k for k in set(keys) if keys.count(k) > 1)[0][:64])
    return dict(pairs)


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
