"""One frame through preprocess -> backend -> decode, timed per stage with time.monotonic().

The three steps are separate so the pipeline can run them on three threads (preprocess beside
capture, decode beside output) and keep the inference thread busy with inference only. The
preprocessor writes into a preallocated tensor; a small ring of them lets the next frame be
prepared while the previous one is still being inferred."""

import time
from typing import List, NamedTuple, Optional, Sequence, Tuple

import numpy as np

from .processing.decoders import build_decoder
from .processing.preprocess import PreprocessConfig, Preprocessor
from .types import Backend, Classifications, Frame, FrameResult, ImageTransform

# Frames that can hold a prepared tensor at once in the pipeline: one being prepared, two in
# the bounded frame queue, one in inference; one spare.
RING = 5


class Prepared(NamedTuple):
    frame: Frame
    tensor: np.ndarray
    transform: ImageTransform
    preprocess_ms: float


class Inferred(NamedTuple):
    prepared: Prepared
    outputs: List[np.ndarray]
    infer_ms: float


class Inference:
    """The model stages of a pipeline, composed from ready parts."""

    def __init__(self, preprocessors: Sequence[Preprocessor], backend: Backend, decoder,
                 labels: Sequence[str] = ()) -> None:
        self._preprocessors = list(preprocessors)
        self._next = 0
        self.backend = backend
        self.decoder = decoder
        self.labels = tuple(labels)

    @classmethod
    def from_parts(cls, preprocess: PreprocessConfig, backend: Backend, decoder_cfg, where: str,
                   labels: Sequence[str] = (),
                   input_size: Optional[tuple] = None) -> "Inference":
        """Checks the pipeline against the loaded model once, before the first frame."""
        ring = [Preprocessor(preprocess, backend.input_spec, input_size) for _ in range(RING)]
        decoder = build_decoder(decoder_cfg, where, ring[0].tensor_spec, backend.output_specs)
        return cls(ring, backend, decoder, labels)

    def prepare(self, frame: Frame) -> Prepared:
        """Preprocess into the next tensor of the ring (called from one thread only)."""
        preprocessor = self._preprocessors[self._next]
        self._next = (self._next + 1) % len(self._preprocessors)
        t0 = time.monotonic()
        tensor, transform = preprocessor(frame.image)
        return Prepared(frame, tensor, transform, (time.monotonic() - t0) * 1000.0)

    def infer(self, prepared: Prepared) -> Inferred:
        t0 = time.monotonic()
        outputs = self.backend.infer(prepared.tensor)
        return Inferred(prepared, outputs, (time.monotonic() - t0) * 1000.0)

    def finish(self, inferred: Inferred) -> Tuple[Frame, FrameResult]:
        t0 = time.monotonic()
        prepared = inferred.prepared
        found = self.decoder(inferred.outputs, prepared.transform)
        if self.labels:
            found = found.with_labels(self.labels)
        frame = prepared.frame
        timing = {"preprocess": prepared.preprocess_ms, "infer": inferred.infer_ms,
                  "postprocess": (time.monotonic() - t0) * 1000.0}
        if isinstance(found, Classifications):
            result = FrameResult(frame.index, frame.width, frame.height, frame.ts, timing,
                                 classifications=found, file=frame.file)
        else:
            result = FrameResult(frame.index, frame.width, frame.height, frame.ts, timing,
                                 detections=found, file=frame.file)
        return frame, result

    def __call__(self, frame: Frame) -> FrameResult:
        return self.finish(self.infer(self.prepare(frame)))[1]

