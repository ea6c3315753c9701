"""A pipeline is done only when all three stages have finished: a short source can end before
the output thread has even started, and its frames must still be emitted (a thread that has not
started yet is not alive either, so "no thread alive" is not "done")."""

import threading

from agent.pipeline import PipelineRunner
from agent.sources import open_source
from agent.stats import PipelineStats
from pipeline_fakes import WholeFrame, empty_result


class HeldBack:
    """start_thread for the runner: starts every stage at once except `held`, kept for later."""

    def __init__(self, held: str) -> None:
        self.held = held
        self.started = []
        self.waiting = None

    def __call__(self, thread: threading.Thread) -> None:
        if thread.name == self.held:
            self.waiting = thread
            return
        self.started.append(thread)
        thread.start()


def test_every_frame_of_a_short_source_is_emitted_before_the_runner_is_done():
    # given a source that ends after 1 frame, and an output thread that starts last
    emitted = []
    starter = HeldBack("output")
    runner = PipelineRunner(open_source("synthetic://?frames=1&width=16&height=16"),
                            WholeFrame(empty_result), emitted.append, PipelineStats(),
                            start_thread=starter)
    runner.start()
    # when capture and inference have finished before output even began
    for thread in starter.started:
        thread.join(30)
        assert not thread.is_alive(), "%s never finished" % thread.name
    # then the runner is not done yet: a frame still waits for the output
    assert not runner.wait(0) and runner.running and emitted == []
    # when the output thread starts at last
    starter.waiting.start()
    # then the frame comes out, and the runner ended because the source did
    assert runner.wait(30), "the runner never finished"
    assert [r.frame_index for r in emitted] == [0]
    assert runner.error is None and runner.end_reason == "source_ended"
