"""Inferences for pipeline tests that need no model: a plain frame -> FrameResult function run
whole on the inference thread, in the prepare / infer / finish shape PipelineRunner takes."""

from agent.types import FrameResult


class WholeFrame:
    """Runs `fn(frame) -> FrameResult` in infer(); prepare and finish pass the frame along."""

    def __init__(self, fn) -> None:
        self._fn = fn

    def prepare(self, frame):
        return frame

    def infer(self, frame):
        return frame, self._fn(frame)

    def finish(self, item):
        return item


def empty_result(frame) -> FrameResult:
    """The result of a frame in which nothing was found."""
    return FrameResult(frame_index=frame.index, width=frame.width, height=frame.height,
                       ts=frame.ts)
