"""Remote commands: allow-listed names only, every argument checked, nothing changed on refusal."""

import json
import random

import pytest

from agent.outputs.remote_commands import ARGUMENTS, MAX_PAYLOAD_BYTES, CommandHandler


class RecordingActions:
    """Handlers that record what they were asked to do, so a refused command provably changed nothing."""

    def __init__(self):
        self.calls = []

    def handler(self, name):
        def run(args):
            self.calls.append((name, dict(args)))
            return {"done": name}
        return run


def make_handler(known_pipelines=("face-detect", "yolov8-coco")):
    actions = RecordingActions()
    replies = []

    def check_pipeline(name):
        if name not in known_pipelines:
            raise ValueError("unknown pipeline %r" % name)

    handler = CommandHandler({n: actions.handler(n) for n in ARGUMENTS}, replies.append,
                             check_pipeline)
    return handler, actions, replies


def send(handler, replies, payload):
    handler.on_message("edgeagent/dev/command", payload)
    return json.loads(replies[-1].decode("utf-8"))


@pytest.mark.parametrize("command, expected_call", [
    ({"id": "a1", "name": "ping"}, ("ping", {})),
    ({"id": "a2", "name": "snapshot", "args": {"quality": 70}}, ("snapshot", {"quality": 70})),
    ({"id": "a3", "name": "reload", "args": {}}, ("reload", {})),
    ({"id": "a4", "name": "set_pipeline", "args": {"pipeline": "yolov8-coco"}},
     ("set_pipeline", {"pipeline": "yolov8-coco"})),
])
def test_allowed_command_runs_and_replies_ok(command, expected_call):
    # given a handler with every allow-listed command enabled
    handler, actions, replies = make_handler()
    # when a well-formed command arrives
    reply = send(handler, replies, json.dumps(command).encode())
    # then it ran once with its arguments and the reply names it
    assert actions.calls == [expected_call]
    assert reply["id"] == command["id"] and reply["ok"] is True
    assert reply["result"] == {"done": command["name"]}


@pytest.mark.parametrize("payload, error_part", [
    (b"not json", "not UTF-8 JSON"),
    (b"\xff\xfe", "not UTF-8 JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"name": "ping"}', "id must be"),
    (b'{"id": 5, "name": "ping"}', "id must be"),
    (b'{"id": "x", "name": "reboot"}', "unknown command 'reboot'"),
    (b'{"id": "x", "name": ["ping"]}', "unknown command"),
    (b'{"id": "x", "name": "ping", "extra": 1}', "unknown fields"),
    (b'{"id": "x", "name": "snapshot", "args": []}', "args must be a JSON object"),
    (b'{"id": "x", "name": "snapshot", "args": {"quality": "high"}}', "must be an integer"),
    (b'{"id": "x", "name": "snapshot", "args": {"quality": true}}', "must be an integer"),
    (b'{"id": "x", "name": "snapshot", "args": {"quality": 500}}', "between 10 and 100"),
    (b'{"id": "x", "name": "snapshot", "args": {"rm": 1}}', "unknown argument"),
    (b'{"id": "x", "name": "set_pipeline", "args": {}}', "args.pipeline is required"),
    (b'{"id": "x", "name": "set_pipeline", "args": {"pipeline": 3}}', "must be a string"),
    (b'{"id": "x", "name": "set_pipeline", "args": {"pipeline": "../../etc/passwd"}}',
     "must be a pipeline name"),
    (b'{"id": "x", "name": "set_pipeline", "args": {"pipeline": "nope"}}', "unknown pipeline"),
    (b"{" + b" " * MAX_PAYLOAD_BYTES + b"}", "byte limit"),
])
def test_bad_command_gets_error_reply_and_changes_nothing(payload, error_part):
    # given a handler
    handler, actions, replies = make_handler()
    # when a malformed or disallowed command arrives
    reply = send(handler, replies, payload)
    # then the reply is an error that says why, and no action ran
    assert reply["ok"] is False and error_part in reply["error"]
    assert actions.calls == []


def test_disabled_command_is_refused_even_if_allow_listed():
    # given a device that enables only ping
    replies = []
    handler = CommandHandler({"ping": lambda args: None}, replies.append, lambda name: None)
    # when a reload arrives
    reply = send(handler, replies, b'{"id": "r", "name": "reload"}')
    # then it is refused by name
    assert reply == {"id": "r", "ok": False, "schema": "edgeagent/command-reply/1",
                     "error": "command 'reload' is not enabled on this device"}


def _fuzz_payloads(rng, count):
    names = list(ARGUMENTS) + ["", "shutdown", "PING", None, 1, {}]
    values = [None, True, 0, -1, 10 ** 30, 1.5, "", "x" * 5000, [], {}, "face-detect", "\u0000"]
    for _ in range(count):
        kind = rng.random()
        if kind < 0.3:
            yield bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 300)))
        elif kind < 0.4:
            yield b'{"id": "f", "name": "ping", "args": {"x": "' + b"A" * rng.randint(1, 20000) + b'"}}'
        else:
            message = {"id": rng.choice(["f", "", "x" * 70, 3, None]), "name": rng.choice(names)}
            if rng.random() < 0.8:
                message["args"] = {rng.choice(["quality", "pipeline", "zz"]): rng.choice(values)
                                   for _ in range(rng.randint(0, 3))}
            yield json.dumps(message).encode()


def test_fuzzed_commands_never_crash_and_only_valid_ones_act():
    # given a handler and a few thousand random, malformed and oversized payloads
    handler, actions, replies = make_handler()
    rng = random.Random(1234)
    payloads = list(_fuzz_payloads(rng, 3000))
    # when every payload is delivered
    for payload in payloads:
        handler.on_message("edgeagent/dev/command", payload)
    # then each got exactly one JSON reply, and every action that ran had valid arguments
    assert len(replies) == len(payloads)
    decoded = [json.loads(r) for r in replies]
    assert sum(1 for r in decoded if r["ok"]) == len(actions.calls)
    assert handler.refused == sum(1 for r in decoded if not r["ok"]) > 2500
    for name, args in actions.calls:
        assert set(args) <= set(ARGUMENTS[name])
        if name == "snapshot" and "quality" in args:
            assert 10 <= args["quality"] <= 100
        if name == "set_pipeline":
            assert args["pipeline"] in ("face-detect", "yolov8-coco")
