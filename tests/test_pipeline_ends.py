"""A pipeline is done only when all three stages have finished: a short source can end before
the output thread has even started, and its frames must still be emitted (a thread that has not
started yet is not alive either, so "no thread alive" is not "done")."""

from agent.pipeline import PipelineRunner
from agent.sources import open_source
from agent.stats import PipelineStats
from agent.types import FrameResult


def classify_nothing(frame):
    return FrameResult(frame_index=frame.index, width=frame.width, height=frame.height,
                       ts=frame.ts)


def test_every_frame_of_a_short_source_is_emitted_before_the_runner_is_done():
    # given many runs of a source that ends after 1 frame (the race shows in a few percent)
    for run in range(300):
        emitted = []
        runner = PipelineRunner(open_source("synthetic://?frames=1&width=16&height=16"),
                                classify_nothing, emitted.append, PipelineStats())
        # when it runs to the end of the source
        runner.start()
        assert runner.wait(30), "run %d never finished" % run
        # then its frame came out, and the runner ended because the source did
        assert [r.frame_index for r in emitted] == [0], "run %d: %r" % (run, emitted)
        assert runner.error is None and runner.end_reason == "source_ended"
