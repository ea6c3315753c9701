"""Snapshots on detection: per label, at most one per min_interval_s, above min_score only,
retried when the publish could not go out."""

import cv2
import numpy as np
import pytest

from agent.config.agent_config import config_from_dict
from agent.config.dashboards_config import SnapshotSettings
from agent.errors import ConfigError
from agent.outputs.snapshot_policy import SnapshotOnDetection, labels_over
from agent.types import Classifications, Detections, Frame, FrameResult


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def frame_with(found, index=0):
    """A frame and its result with the given (label, score) detections."""
    image = np.full((120, 160, 3), 90, np.uint8)
    boxes = np.array([[10, 10, 60, 60]] * len(found), np.float32).reshape(-1, 4)
    detections = Detections(boxes, np.array([s for _, s in found], np.float32),
                            np.arange(len(found)), tuple(label for label, _ in found))
    frame = Frame(image, index, 0.0, 0.0)
    return frame, FrameResult(index, 160, 120, 0.0, {}, detections=detections)


# each step: (seconds later, detections in the frame, labels expected to trigger a snapshot)
@pytest.mark.parametrize("steps", [
    [(0, [("face", 0.9)], ["face"]), (1, [("face", 0.9)], None), (10, [("face", 0.9)], ["face"])],
    [(0, [("face", 0.9)], ["face"]), (1, [("person", 0.8)], ["person"]),
     (2, [("face", 0.9), ("person", 0.9)], None)],
    [(0, [("face", 0.3)], None), (1, [("face", 0.6)], ["face"])],         # min_score 0.5
    [(0, [("cat", 0.99)], None), (1, [], None)],                          # not configured
    [(0, [("face", 0.9), ("person", 0.9)], ["face", "person"])],          # one image for both
])
def test_one_snapshot_per_label_per_interval(steps):
    clock, sent = Clock(), []
    policy = SnapshotOnDetection(SnapshotSettings(("face", "person"), 10.0, 0.5, 80),
                                 sent.append, clock)
    for index, (later, found, expected) in enumerate(steps):
        clock.now += later
        assert policy.observe(*frame_with(found, index)) == expected
    assert len(sent) == sum(1 for step in steps if step[2])
    for jpeg in sent:
        assert cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR).shape == (120, 160, 3)


def test_a_snapshot_that_could_not_go_out_is_tried_again_on_the_next_frame():
    clock, online = Clock(), [False]
    policy = SnapshotOnDetection(SnapshotSettings(("face",), 60.0, 0.5, 80),
                                 lambda jpeg: online[0], clock)
    assert policy.observe(*frame_with([("face", 0.9)])) is None
    online[0] = True
    assert policy.observe(*frame_with([("face", 0.9)])) == ["face"]


def test_classifications_count_by_their_top_class():
    result = FrameResult(0, 10, 10, 0.0, {}, classifications=Classifications(
        np.array([3, 1]), np.array([0.7, 0.2], np.float32), ("cat", "dog")))
    assert labels_over(result, 0.5) == ["cat"]
    assert labels_over(result, 0.8) == []


@pytest.mark.parametrize("section, message", [
    ({"labels": "face"}, "must be a list"),
    ({"labels": ["face"], "min_interval_s": 0}, "snapshots.min_interval_s"),
    ({"labels": ["face"], "every": 3}, "unknown key"),
    ({"quality": 5}, "snapshots.quality"),
])
def test_bad_snapshot_config_is_one_clear_error(section, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"snapshots": section}, "c.yaml")


@pytest.mark.parametrize("data, message", [
    ({"homeassistant": {"discovery": "yes"}}, "homeassistant.discovery"),
    ({"homeassistant": {"prefix": "ha/"}}, "homeassistant.prefix"),
    ({"homeassistant": {"discover": True}}, "unknown key"),
    ({"http": {"port": 70000}}, "http.port"),
    ({"http": {"bind": "0.0.0.0"}}, "unknown key"),
])
def test_bad_dashboard_config_is_one_clear_error(data, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(data, "c.yaml")


def test_everything_is_off_by_default():
    config = config_from_dict({}, "c.yaml")
    assert not config.homeassistant.discovery and not config.http.enabled
    assert not config.snapshots.enabled
    assert config_from_dict({"http": {"port": 9100}}, "c.yaml").http.enabled
