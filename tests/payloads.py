"""The payloads of docs/mqtt.md, verbatim, and ways to break them, shared by the schema tests."""

import copy

# The example payloads that docs/mqtt.md gives, verbatim.
RESULT_EXAMPLE = {
    "schema": "edgeagent/result/1", "device_id": "nano-01",
    "boot_id": "3f2a9c0d4e5b6a7f8091a2b3c4d5e6f7", "seq": 1234,
    "ts": "2026-11-22T23:00:00.123Z", "frame": {"index": 567, "width": 1280, "height": 720},
    "pipeline": "face-detect", "model": "face_detection_short_range", "backend": "tflite",
    "timing_ms": {"preprocess": 1.2, "infer": 8.4, "postprocess": 0.3, "total": 10.9},
    "detections": [{"label": "face", "class_id": 0, "score": 0.93, "box": [412.0, 96.5, 530.2, 241.7]}]}
STATUS_EXAMPLE = {"schema": "edgeagent/status/1", "state": "online", "device_id": "nano-01",
                  "ts": "2026-11-22T23:00:00.123Z", "version": "0.1.0", "pipeline": "face-detect",
                  "backend": "tflite"}
COMMAND_EXAMPLE = {"id": "5c1b0f7e", "name": "snapshot", "args": {}}
REPLY_OK = {"schema": "edgeagent/command-reply/1", "id": "5c1b0f7e", "ok": True,
            "result": {"bytes": 48213}}
REPLY_ERROR = {"schema": "edgeagent/command-reply/1", "id": "5c1b0f7e", "ok": False,
               "error": "unknown command 'reboot'; allowed: ping, reload, set_pipeline, snapshot"}


def without(payload, dotted):
    broken = copy.deepcopy(payload)
    *parents, leaf = dotted.split(".")
    target = broken
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    del target[leaf]
    return broken


def replaced(payload, dotted, value):
    broken = copy.deepcopy(payload)
    *parents, leaf = dotted.split(".")
    target = broken
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    target[int(leaf) if isinstance(target, list) else leaf] = value
    return broken
