"""agent/wire.py, the one wire contract: the exact bytes of the status payload and of the
result payload's detections and classifications, and the one label fallback."""

import numpy as np
import pytest

from agent import __version__, wire
from agent.types import Classifications, Detections, class_labels

TS = 1795000000.1234           # 2026-11-18T11:06:40.1234Z: milliseconds truncated


def test_status_payload_bytes_are_compact_json_in_a_fixed_field_order():
    # given a state at a known time / when the status payload is built
    payload = wire.status_payload(wire.ONLINE, "nano-01", "face-detect", "tflite", TS)
    # then its bytes are the contract's, field for field
    assert payload == (b'{"schema":"edgeagent/status/1","state":"online","device_id":"nano-01",'
                       b'"ts":"2026-11-18T11:06:40.123Z","version":"' + __version__.encode() +
                       b'","pipeline":"face-detect","backend":"tflite"}')


@pytest.mark.parametrize("ts, text", [(0.0, "1970-01-01T00:00:00.000Z"),
                                      (0.9999, "1970-01-01T00:00:00.999Z"),
                                      (TS, "2026-11-18T11:06:40.123Z")])
def test_utc_iso_has_milliseconds_and_a_z(ts, text):
    assert wire.utc_iso(ts) == text


def test_detections_payload_rounds_and_labels_unnamed_classes_by_id():
    # given two detections, only the first class named
    found = Detections(np.array([[1.04, 2.06, 3.0, 4.0], [5, 6, 7, 8]]), np.array([0.912345, 0.5]),
                       np.array([0, 3])).with_labels(["face"])
    # when serialised
    items = wire.detections_payload(found)
    # then scores have 4 decimals, boxes 1, and the unnamed class is its id
    assert items == [{"label": "face", "class_id": 0, "score": 0.9123, "box": [1.0, 2.1, 3.0, 4.0]},
                     {"label": "3", "class_id": 3, "score": 0.5, "box": [5.0, 6.0, 7.0, 8.0]}]
    assert wire.to_json_bytes({"d": items}).startswith(b'{"d":[{"label":"face","class_id":0,')


def test_unlabelled_classifications_are_labelled_by_class_id():
    found = Classifications(np.array([7, 2]), np.array([0.8, 0.1]))
    assert wire.classifications_payload(found) == [
        {"label": "7", "class_id": 7, "score": 0.8}, {"label": "2", "class_id": 2, "score": 0.1}]


@pytest.mark.parametrize("names, ids, labels", [
    (("a", "b"), (1, 0), ("b", "a")),
    (("a",), (0, 1, -1), ("a", "1", "-1")),
    ((), (5,), ("5",)),
])
def test_class_labels_name_known_ids_and_fall_back_to_the_id(names, ids, labels):
    assert class_labels(names, ids) == labels


def test_topics_are_built_in_one_place():
    assert wire.topic("edgeagent", "nano-01", wire.STATUS) == "edgeagent/nano-01/status"
    assert wire.every_device("edgeagent", wire.RESULTS) == "edgeagent/+/results"
