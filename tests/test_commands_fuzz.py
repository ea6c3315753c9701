"""Hostile command payloads against the real command handler (agent/outputs/remote_actions.py + commands.py),
and set_pipeline with user pipelines from commands.pipeline_dir.

The fuzz: 10,000 payloads (random bytes, JSON nested 10,000 deep and as deep as fits in the size
limit, 2 MB payloads, every field with wrong types, numbers JSON allows but Python chokes on).
Each gets exactly one schema-valid reply; no traceback is logged, the handler never raises,
memory stays flat and the last thousand take no longer than the first (generously).
"""

import json
import logging
import os
import random
import time

import numpy as np
import pytest

from agent.outputs.remote_commands import MAX_PAYLOAD_BYTES
from agent.outputs.remote_actions import build_command_handler
from agent.types import Detections, Frame, FrameResult

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FACE = os.path.join(ROOT, "pipelines", "face-detect.yaml")


def vm_rss_kb() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


class Device:
    """The service's side as the handler sees it: a latest frame, reload requests, replies."""

    def __init__(self, pipeline_dir=None):
        image = np.zeros((48, 64, 3), np.uint8)
        result = FrameResult(3, 64, 48, time.time(), {}, detections=Detections.empty())
        self.latest = (Frame(image, 3, time.time(), time.monotonic()), result)
        self.reloads, self.snapshots, self.replies = [], [], []
        self.handler = build_command_handler(lambda: self.latest, self.snapshots.append,
                                             self.reloads.append, self.replies.append,
                                             pipeline_dir)

    def send(self, payload) -> dict:
        before = len(self.replies)
        self.handler.on_message("edgeagent/dev/command", payload)
        assert len(self.replies) == before + 1
        return json.loads(self.replies[-1].decode("utf-8"))


WRONG = [None, True, False, 0, -1, 1.5, 1e308, "", "x" * 300, [], [1, [2]], {}, {"a": {}},
         "\u0000", "\ud800", "../../etc/passwd", "/etc/shadow", 10 ** 40]


def hostile(rng: random.Random, n: int) -> bytes:
    kind = n % 10
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 600)))
    if kind == 1:
        return b"[" * 10000 + b"]" * 10000
    if kind == 2:      # as deep as fits under the size limit: the parser's recursion limit
        depth = (MAX_PAYLOAD_BYTES - 40) // 2
        return b'{"id":"d","name":"ping","args":' + b"[" * depth + b"]" * depth + b"}"
    if kind == 3 and n % 100 == 3:
        return b'{"id":"big","name":"ping","pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'
    if kind == 4:
        return json.dumps({"id": rng.choice(WRONG), "name": rng.choice(WRONG + ["ping"]),
                           "args": rng.choice(WRONG)}).encode()
    if kind == 5:
        name = rng.choice(["snapshot", "set_pipeline", "reload", "ping"])
        key = {"snapshot": "quality", "set_pipeline": "pipeline"}.get(name, "x")
        return json.dumps({"id": "w%d" % n, "name": name, "args": {key: rng.choice(WRONG)}}).encode()
    if kind == 6:
        return rng.choice([b'{"id":"n","name":"snapshot","args":{"quality":NaN}}',
                           b'{"id":"n","name":"snapshot","args":{"quality":1e999}}',
                           b'{"id":"n","name":"snapshot","args":{"quality":' + b"9" * 4200 + b"}}",
                           b'{"id":"n","name":"ping","name":"reload"}', b'"just a string"',
                           b"\xff\xfe{}", b"null", b"", b"{" * 3000])
    if kind == 7:
        text = json.dumps({"id": "u%d" % n, "name": "set_pipeline",
                           "args": {"pipeline": rng.choice(["face-detect/../x", "a" * 300,
                                                            "nope", "/tmp/x.yaml", ".yaml"])}})
        return text.encode()
    if kind == 8:
        good = json.dumps({"id": "g%d" % n, "name": "ping"}).encode()
        cut = rng.randint(0, len(good))
        return good[:cut] + bytes([rng.getrandbits(8)]) + good[cut + 1:]
    return json.dumps({"id": "p%d" % n, "name": "snapshot",
                       "args": {"quality": rng.randint(-5, 120)}}).encode()


def test_ten_thousand_hostile_payloads_get_replies_and_no_traceback(caplog, schema_validator):
    device = Device()
    rng = random.Random(1234)
    times = []
    with caplog.at_level(logging.DEBUG):
        for n in range(10000):
            if n == 1000:
                rss_warm = vm_rss_kb()
            started = time.monotonic()
            reply = device.send(hostile(rng, n))
            times.append(time.monotonic() - started)
            if n % 97 == 0:
                schema_validator.validate("command_reply", reply)
    # then nothing raised and nothing logged a traceback, and the log stayed short
    assert not [r for r in caplog.records if r.exc_info], caplog.records[0].getMessage()
    assert len([r for r in caplog.records if r.levelno >= logging.INFO]) < 100
    refused = [json.loads(r) for r in device.replies if not json.loads(r)["ok"]]
    assert len(refused) > 8000
    assert any("nested too deeply" in r["error"] for r in refused)
    assert any("byte limit" in r["error"] for r in refused)
    assert not device.reloads                       # nothing hostile changed the pipeline
    # and memory and rate stayed flat
    assert vm_rss_kb() - rss_warm < 20 * 1024
    assert sum(times[-1000:]) < 3 * sum(times[1000:2000]) + 0.5


@pytest.fixture
def user_pipelines(tmp_path):
    folder = tmp_path / "pipelines"
    folder.mkdir()
    with open(FACE) as handle:
        text = handle.read()
    models = os.path.join(ROOT, "models")
    (folder / "my-faces.yaml").write_text(text.replace("name: face-detect", "name: my-faces")
                                          .replace("models/", models + "/"))
    outside = tmp_path / "outside.yaml"
    outside.write_text((folder / "my-faces.yaml").read_text())
    (folder / "sneaky.yaml").symlink_to(outside)
    return folder


@pytest.mark.parametrize("value, chosen", [("my-faces", "my-faces.yaml"),
                                           ("my-faces.yaml", "my-faces.yaml"),
                                           ("FOLDER/my-faces.yaml", "my-faces.yaml"),
                                           ("face-detect", None)])
def test_set_pipeline_takes_user_pipelines_from_the_configured_folder(user_pipelines, value,
                                                                      chosen):
    device = Device(str(user_pipelines))
    value = value.replace("FOLDER", str(user_pipelines))
    reply = device.send(json.dumps({"id": "s1", "name": "set_pipeline",
                                    "args": {"pipeline": value}}).encode())
    assert reply["ok"], reply
    expected = os.path.realpath(str(user_pipelines / chosen)) if chosen else "face-detect"
    assert device.reloads == [expected]


@pytest.mark.parametrize("value", ["../outside.yaml", "sneaky.yaml", "/etc/passwd",
                                   "/tmp/../etc/x.yaml", "no-such-pipeline", "my-faces.txt"])
@pytest.mark.parametrize("with_folder", [True, False])
def test_set_pipeline_refuses_anything_outside_without_hinting_at_it(user_pipelines, value,
                                                                      with_folder):
    device = Device(str(user_pipelines) if with_folder else None)
    reply = device.send(json.dumps({"id": "s2", "name": "set_pipeline",
                                    "args": {"pipeline": value}}).encode())
    # then it is refused, nothing reloads, and the message offers only what may be chosen
    assert reply["ok"] is False and not device.reloads
    error = reply["error"].lower()
    assert "path" not in error and ".yaml file" not in error and "/" not in error.replace(
        value.lower()[:64], "")
    if "must be a pipeline name" not in error:         # a name: the list of what may be chosen
        assert "face-detect" in error
        assert ("my-faces.yaml" in error) == with_folder
