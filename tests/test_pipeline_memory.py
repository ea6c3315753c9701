"""Memory of the pipeline: results wait for the output thread without their frame's pixels;
only the snapshot tap keeps a frame (the newest), and it pairs it with the newest result."""

import threading
import time

from agent import backends
from agent.inference import Inference
from agent.pipeline import RESULTS_QUEUE, PipelineRunner
from agent.config.pipeline_spec import load_pipeline
from agent.outputs.snapshot import SnapshotTap
from agent.sources import open_recovering
from agent.stats import PipelineStats


def face_inference():
    spec = load_pipeline("face-detect")
    backend = backends.load("onnxruntime", spec.model_for("onnxruntime"), {"threads": 1},
                            spec.path)
    return Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path, spec.labels,
                                spec.input_size)


def test_a_stalled_output_holds_no_frames_and_the_tap_keeps_the_newest():
    # given 1080p frames and an output that is stuck
    source = open_recovering("synthetic://?width=1920&height=1080&pattern=moving_box&frames=60")
    gate, emitted = threading.Event(), []
    tap = SnapshotTap()

    def emit(result):
        gate.wait(60)
        emitted.append(result)

    runner = PipelineRunner(source, face_inference(), emit, PipelineStats(), observe=tap)
    runner.start()
    try:
        # when inference has filled the results queue behind it
        deadline = time.monotonic() + 60
        while not runner._results.full() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert runner._results.full()
        waiting = list(runner._results.queue)
        # then the waiting results carry no pixels, only the frame's size and index
        assert len(waiting) == RESULTS_QUEUE
        for item in waiting:
            frame = item.prepared.frame
            assert frame.image.nbytes == 0 and (frame.width, frame.height) == (1920, 1080)
    finally:
        gate.set()
        runner.stop()
        assert runner.wait(60)
        source.close()
    # and the tap pairs the newest result with a real picture
    frame, result = tap.latest()
    assert frame.image.shape == (1080, 1920, 3) and result.frame_index == emitted[-1].frame_index
    assert frame.index >= result.frame_index
