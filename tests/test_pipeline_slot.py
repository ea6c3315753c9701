"""Live sources hand over through a one-frame slot: a frame the inference has not taken yet is
replaced by a newer one and counted as dropped, so inference never works on a stale picture.
The fakes below gate the inference with events, so the order of events is fixed, not timed."""

import threading

import numpy as np

from agent.pipeline import PipelineRunner
from agent.stats import PipelineStats
from agent.types import CAMERA_RUNNING, CAMERA_STOPPED, CameraStatus, Frame
from pipeline_fakes import empty_result

DEADLINE_S = 30.0


def frame(index: int) -> Frame:
    return Frame(np.zeros((4, 4, 3), np.uint8), index, ts=float(index), mono=float(index))


class GatedInference:
    """Records which frames it took; holds the first frame in infer() until `release` is set."""

    def __init__(self) -> None:
        self.taken = []
        self.busy = threading.Event()       # it is inside infer() with the first frame
        self.release = threading.Event()
        self.took_newest = threading.Event()

    def prepare(self, item):
        self.taken.append(item.index)
        if item.index == 2:
            self.took_newest.set()
        return item

    def infer(self, item):
        if item.index == 0:
            self.busy.set()
            self.release.wait(DEADLINE_S)
        return item, empty_result(item)

    def finish(self, item):
        return item


class ScriptedCamera:
    """A live source: frame 0; frames 1 and 2 while the inference is busy with 0 (so 2 lands on
    the slot 1 still occupies); then, once the newest was taken, it stops."""

    live = True
    uri = "fake://camera"

    def __init__(self, inference: GatedInference) -> None:
        self._inference = inference
        self._reads = 0
        self._state = CAMERA_RUNNING
        self.handed_all = threading.Event()   # frames 1 and 2 are both in the slot's past

    def read(self):
        self._reads += 1
        if self._reads == 1:
            return frame(0)
        if self._reads == 2:
            self._inference.busy.wait(DEADLINE_S)
            return frame(1)
        if self._reads == 3:
            return frame(2)       # capture put frame 1 before asking: this one replaces it
        self.handed_all.set()
        self._inference.took_newest.wait(DEADLINE_S)
        self._state = CAMERA_STOPPED
        return None

    def status(self) -> CameraStatus:
        return CameraStatus(state=self._state)

    def close(self) -> None:
        self._state = CAMERA_STOPPED


def test_a_newer_frame_replaces_the_one_inference_has_not_taken_and_counts_it_dropped():
    # given a live camera and an inference busy with frame 0
    inference = GatedInference()
    camera = ScriptedCamera(inference)
    stats, emitted = PipelineStats(), []
    runner = PipelineRunner(camera, inference, emitted.append, stats)
    runner.start()
    # when frames 1 and 2 arrive before the inference is free again
    assert camera.handed_all.wait(DEADLINE_S), "the camera was never asked for a 4th frame"
    inference.release.set()
    # then the inference takes frame 2, the newest; frame 1 is dropped, never processed
    assert runner.wait(DEADLINE_S), "the pipeline never ended"
    assert runner.error is None and runner.end_reason == "source_ended"
    assert inference.taken == [0, 2]
    assert [r.frame_index for r in emitted] == [0, 2]
    assert stats.dropped == 1 and stats.captured == 3 and stats.processed == 2
