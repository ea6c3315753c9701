"""One frame through preprocess -> backend -> decode, timed per stage with time.monotonic()."""

import time
from typing import Optional, Sequence

from .processing.decoders import build_decoder
from .processing.preprocess import PreprocessConfig, Preprocessor
from .types import Backend, Classifications, Frame, FrameResult


class Inference:
    """The model stages of a pipeline, composed from ready parts."""

    def __init__(self, preprocessor: Preprocessor, backend: Backend, decoder,
                 labels: Sequence[str] = ()) -> None:
        self.preprocessor = preprocessor
        self.backend = backend
        self.decoder = decoder
        self.labels = tuple(labels)

    @classmethod
    def from_parts(cls, preprocess: PreprocessConfig, backend: Backend, decoder_cfg, where: str,
                   labels: Sequence[str] = (),
                   input_size: Optional[tuple] = None) -> "Inference":
        """Checks the pipeline against the loaded model once, before the first frame."""
        preprocessor = Preprocessor(preprocess, backend.input_spec, input_size)
        decoder = build_decoder(decoder_cfg, where, preprocessor.tensor_spec, backend.output_specs)
        return cls(preprocessor, backend, decoder, labels)

    def __call__(self, frame: Frame) -> FrameResult:
        t0 = time.monotonic()
        tensor, transform = self.preprocessor(frame.image)
        t1 = time.monotonic()
        outputs = self.backend.infer(tensor)
        t2 = time.monotonic()
        found = self.decoder(outputs, transform)
        if self.labels:
            found = found.with_labels(self.labels)
        t3 = time.monotonic()
        timing = {"preprocess": (t1 - t0) * 1000.0, "infer": (t2 - t1) * 1000.0,
                  "postprocess": (t3 - t2) * 1000.0}
        if isinstance(found, Classifications):
            return FrameResult(frame.index, frame.width, frame.height, frame.ts, timing,
                               classifications=found)
        return FrameResult(frame.index, frame.width, frame.height, frame.ts, timing,
                           detections=found)
