"""agent/schemas/command*.json: commands and replies that break the contract are rejected, and
the real command handler accepts schema-valid commands and answers with schema-valid replies."""

import json

import pytest

from payloads import REPLY_ERROR, REPLY_OK, replaced, without


@pytest.mark.parametrize("name, payload", [
    ("command", {"name": "snapshot"}), ("command", {"id": "1"}),
    ("command", {"id": "1", "name": "Reboot Now"}), ("command", {"id": "1", "name": "x", "args": []}),
    ("command", {"id": "has space", "name": "ping"}), ("command", {"id": "1", "name": "ping", "x": 1}),
    ("command_reply", without(REPLY_OK, "schema")), ("command_reply", without(REPLY_OK, "id")),
    ("command_reply", without(REPLY_OK, "ok")),
    ("command_reply", without(REPLY_ERROR, "error")),               # a failure must say why
    ("command_reply", replaced(REPLY_OK, "error", "but")),          # success has no error
    ("command_reply", replaced(REPLY_OK, "ok", "yes")),
    ("command_reply", replaced(REPLY_OK, "id", None)),              # only a refusal lacks an id
])
def test_bad_commands_and_replies_are_rejected(schema_validator, name, payload):
    assert schema_validator.errors(name, payload)


class Recorder:
    def __init__(self):
        self.calls = []

    def handler(self, name):
        def run(args):
            self.calls.append(name)
            return {"done": name} if name != "reload" else None
        return run


@pytest.mark.parametrize("command", [
    {"id": "a1", "name": "ping"},
    {"id": "a2", "name": "reload", "args": None},
    {"id": "a3", "name": "snapshot", "args": {"quality": 80}},
    {"id": "a4", "name": "set_pipeline", "args": {"pipeline": "face-detect"}},
])
def test_real_command_handler_accepts_schema_valid_commands_and_replies_validly(
        schema_validator, command):
    from agent.outputs.remote_commands import ARGUMENTS, CommandHandler
    # given a schema-valid command and the agent's handler with recording actions
    schema_validator.validate("command", command)
    replies, actions = [], Recorder()
    handler = CommandHandler({n: actions.handler(n) for n in ARGUMENTS}, replies.append,
                             lambda name: None)
    # when it arrives / then it runs, and the reply fits its schema and names the command
    handler.on_message("edgeagent/dev/command", json.dumps(command).encode("utf-8"))
    reply = schema_validator.validate("command_reply", replies[-1])
    assert reply["ok"] and reply["id"] == command["id"] and actions.calls == [command["name"]]


# (payload, whether the command schema already rejects it: it checks the shape, while the
# allow-list and each command's arguments are the handler's to check)
@pytest.mark.parametrize("payload, shape_is_wrong", [
    (b"not json", True), (b'{"id": "b2", "name": "ping", "x": 1}', True),
    (b'{"name": "ping"}', True), (b'{"id": "b 5", "name": "ping"}', True),
    (b'{"id": "b1", "name": "reboot"}', False),
    (b'{"id": "b3", "name": "snapshot", "args": {"quality": 5}}', False),
    (b'{"id": "b4", "name": "set_pipeline", "args": {}}', False),
])
def test_real_command_handler_refusals_fit_the_reply_schema(schema_validator, payload,
                                                            shape_is_wrong):
    from agent.outputs.remote_commands import ARGUMENTS, CommandHandler
    replies, actions = [], Recorder()
    handler = CommandHandler({n: actions.handler(n) for n in ARGUMENTS}, replies.append,
                             lambda name: None)
    handler.on_message("edgeagent/dev/command", payload)
    reply = schema_validator.validate("command_reply", replies[-1])
    assert reply["ok"] is False and reply["error"] and actions.calls == []
    try:
        wrong = bool(schema_validator.errors("command", json.loads(payload.decode("utf-8"))))
    except ValueError:
        wrong = True                  # not JSON at all
    assert wrong == shape_is_wrong
