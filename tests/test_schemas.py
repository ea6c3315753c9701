"""agent/schemas/*.json: valid JSON Schemas that accept what the agent's own code produces
(reporter, status, health) and the examples of docs/mqtt.md, and reject payloads that break
the contract (a required field missing, a wrong type, a timestamp without milliseconds or Z)."""

import json

import numpy as np
import pytest

from agent.outputs.health import RUNNING, HealthMonitor, camera_part
from agent.outputs.reporter import LocalSequence, ResultReporter, status_payload
from agent.schemas import NAMES, load_schema, schema_path
from agent.board.sensors import SystemSensors
from agent.stats import PipelineStats
from agent.types import (CAMERA_RUNNING, BackendInfo, CameraStatus, Classifications,
                         Detections, FrameResult)
from payloads import (COMMAND_EXAMPLE, REPLY_ERROR, REPLY_OK, RESULT_EXAMPLE,  # noqa: F401
                      STATUS_EXAMPLE, replaced, without)

TIMING = {"preprocess": 1.2, "infer": 8.4, "postprocess": 0.3}
OUTBOX_STATS = {"pending": 4, "dropped": 0, "bytes": 1200, "unstored": 0, "storage": "ok",
                "storage_error": None, "rejected": 2, "last_reject_reason": "not authorized (0x87)",
                "recovered": None}


class StillSource:
    """A file-like source as health sees it: its status and a uri."""
    uri = "file:///data/clip.avi"
    live = False

    def status(self):
        return CameraStatus(CAMERA_RUNNING, reconnects=2, stalls=1, dropped=3)


class Now:
    """What the service's Current answers health: state, source, backend, system readings."""

    def __init__(self, source=None, state=RUNNING, backend=BackendInfo("tflite", "fp32", "cpu")):
        self.state = state
        self._source = source
        self._backend = backend
        self._sensors = SystemSensors()

    def source(self):
        return self._source

    def backend_info(self):
        return self._backend

    def system(self):
        return self._sensors.read()

    def health_interval_s(self):
        return 10.0


def reporter_payloads(result, policy="every_frame"):
    printed = []
    reporter = ResultReporter("nano-01", "face-detect", "face_detection_short_range", "tflite",
                              LocalSequence(), policy, 1.0, printed.append)
    reporter(result)
    return [json.loads(p) for p in printed]


def detections_result(ts=1795000000.1234):
    dets = Detections(np.array([[412.04, 96.5, 530.2, 241.7], [0.0, 0.0, 10.0, 12.0]]),
                      np.array([0.93, 0.51]), np.array([0, 0]), ("face", "face"))
    return FrameResult(567, 1280, 720, ts, dict(TIMING), detections=dets)


def health_monitor(source=None, send=lambda data: None):
    stats = PipelineStats()
    for _ in range(5):
        stats.count_captured()
        stats.count_processed(dict(TIMING))
    return HealthMonitor("nano-01", stats, Now(source), send, lambda: dict(OUTBOX_STATS))


@pytest.mark.parametrize("name", NAMES)
def test_each_schema_is_a_valid_draft_2020_12_schema(name):
    import jsonschema
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema_path(name).endswith("agent/schemas/%s.json" % name)


def test_unknown_schema_name_is_refused_with_the_known_names():
    with pytest.raises(ValueError, match="no schema 'results'; known: result, status"):
        load_schema("results")


@pytest.mark.parametrize("name, payload", [
    ("result", RESULT_EXAMPLE), ("status", STATUS_EXAMPLE), ("command", COMMAND_EXAMPLE),
    ("command_reply", REPLY_OK), ("command_reply", REPLY_ERROR),
    ("command", {"id": "1", "name": "reload"}), ("command", {"id": "x:1", "name": "ping", "args": None}),
    ("command_reply", dict(REPLY_ERROR, id=None)),
])
def test_conventions_examples_are_valid(schema_validator, name, payload):
    assert schema_validator.errors(name, payload) == []


def test_reporter_detection_payload_is_valid_and_keeps_the_frame_facts(schema_validator):
    [payload] = reporter_payloads(detections_result())
    schema_validator.validate("result", payload)
    assert payload["ts"] == "2026-11-18T11:06:40.123Z"
    assert payload["frame"] == {"index": 567, "width": 1280, "height": 720}
    assert payload["detections"][0]["box"] == [412.0, 96.5, 530.2, 241.7]
    assert payload["timing_ms"]["total"] == 9.9


def test_reporter_classification_payload_with_raw_logits_is_valid(schema_validator):
    found = Classifications(np.array([281, 285]), np.array([7.5, -1.25]), ("tabby", "Egyptian cat"))
    [payload] = reporter_payloads(FrameResult(0, 224, 224, 1795000000.0, dict(TIMING),
                                              classifications=found))
    schema_validator.validate("result", payload)
    assert [c["label"] for c in payload["classifications"]] == ["tabby", "Egyptian cat"]


@pytest.mark.parametrize("state", ["online", "stopped", "offline"])
@pytest.mark.parametrize("pipeline, backend", [("face-detect", "onnxruntime"), ("", "")])
def test_status_payloads_are_valid_before_and_after_the_backend_is_known(
        schema_validator, state, pipeline, backend):
    payload = schema_validator.validate("status", status_payload(
        state, "nano-01", pipeline, backend, 1795000000.5))
    assert payload["state"] == state and payload["ts"] == "2026-11-18T11:06:40.500Z"


@pytest.mark.parametrize("source", [StillSource(), None], ids=["with-source", "before-source"])
def test_health_payload_from_the_real_monitor_and_sensors_is_valid(schema_validator, source):
    sent = []
    health_monitor(source, send=sent.append).publish_once()
    payload = schema_validator.validate("health", sent[0])
    assert payload["latency_ms"]["infer"] == {"p50": 8.4, "p95": 8.4}
    assert payload["frames"] == {"captured": 5, "processed": 5,
                                 "dropped": 3 if source is not None else 0}


def test_camera_part_of_a_plain_source_has_zero_counters():
    class Folder:
        uri = "images:///data/pics"

        def status(self):
            return CameraStatus()
    assert camera_part(Folder()) == {"state": "running", "reconnects": 0, "stalls": 0,
                                     "uri": "images:///data/pics"}


@pytest.mark.parametrize("field", ["schema", "device_id", "boot_id", "seq", "ts", "frame", "pipeline",
                                   "model", "backend", "timing_ms", "detections", "frame.index",
                                   "frame.width", "timing_ms.total", "detections.0.box",
                                   "detections.0.score", "detections.0.label",
                                   "detections.0.class_id"])
def test_result_without_a_required_field_is_rejected(schema_validator, field):
    assert schema_validator.errors("result", without(RESULT_EXAMPLE, field))


@pytest.mark.parametrize("field, value", [
    ("ts", "2026-11-22T23:00:00Z"),              # no milliseconds
    ("ts", "2026-11-22T23:00:00.123"),           # no Z
    ("ts", "2026-11-22T23:00:00.123+00:00"),     # an offset instead of Z
    ("ts", "2026-11-22 23:00:00.123Z"),
    ("seq", 0), ("seq", "1234"), ("seq", 12.5), ("boot_id", "ABC"), ("boot_id", 7),
    ("frame.index", -1), ("device_id", "a/b"), ("backend", "pytorch"),
    ("schema", "edgeagent/result/2"),
    ("detections", []),
    ("detections.0.box", [1.0, 2.0, 3.0]), ("detections.0.box", [1.0, 2.0, 3.0, "4"]),
    ("detections.0.score", 1.5), ("detections.0.class_id", -1),
    ("timing_ms.infer", -0.1),
])
def test_result_with_a_wrong_value_is_rejected(schema_validator, field, value):
    assert schema_validator.errors("result", replaced(RESULT_EXAMPLE, field, value))


def test_result_may_carry_extra_fields_for_forward_compatibility(schema_validator):
    extended = replaced(RESULT_EXAMPLE, "tracker", {"ids": [7]})
    extended["detections"][0]["track_id"] = 7
    assert schema_validator.errors("result", extended) == []


@pytest.mark.parametrize("field", ["schema", "state", "device_id", "ts", "version", "pipeline",
                                   "backend"])
def test_status_without_a_required_field_is_rejected(schema_validator, field):
    assert schema_validator.errors("status", without(STATUS_EXAMPLE, field))


@pytest.mark.parametrize("field, value", [("state", "running"), ("ts", "1795000000.5"),
                                          ("backend", "cuda")])
def test_status_with_a_wrong_value_is_rejected(schema_validator, field, value):
    assert schema_validator.errors("status", replaced(STATUS_EXAMPLE, field, value))


@pytest.fixture
def health_payload():
    payload = health_monitor(StillSource()).snapshot().to_payload("nano-01")
    return json.loads(json.dumps(payload))


@pytest.mark.parametrize("field", ["schema", "device_id", "boot_id", "ts", "uptime_s", "state", "fps",
                                   "latency_ms", "camera", "outbox", "system", "backend",
                                   "fps.dropped", "camera.reconnects", "camera.stalls",
                                   "outbox.pending", "outbox.bytes", "outbox.unstored",
                                   "outbox.storage", "outbox.rejected",
                                   "outbox.last_reject_reason", "system.mem_total_mb",
                                   "backend.name", "backend.precision", "backend.device",
                                   "latency_ms.infer.p95"])
def test_health_without_a_required_field_is_rejected(schema_validator, health_payload, field):
    assert schema_validator.errors("health", without(health_payload, field))


@pytest.mark.parametrize("field, value", [("state", "ok"), ("uptime_s", -1),
                                          ("outbox.pending", 1.5), ("system.cpu_percent", None),
                                          ("boot_id", "not-hex"), ("outbox.storage", "fine"),
                                          ("outbox.rejected", -1),
                                          ("system.temps_c", {"cpu": "hot"}),
                                          ("backend.name", "torch")])
def test_health_with_a_wrong_value_is_rejected(schema_validator, health_payload, field, value):
    assert schema_validator.errors("health", replaced(health_payload, field, value))
