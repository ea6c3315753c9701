"""The values that flow through the agent, one way:
Frame -> preprocess -> Backend.infer (raw outputs) -> decode -> Detections/Classifications -> FrameResult.

All are frozen; arrays inside are made read-only so no stage can change what another stage sees.
"""

from dataclasses import dataclass, field  # novm: the dataclasses backport serves 3.6
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

try:  # Protocol is in typing from 3.8; JetPack 4.6 (3.6) needs typing_extensions
    from typing import Protocol  # novm
except ImportError:  # pragma: no cover - exercised on Python 3.6/3.7 only
    from typing_extensions import Protocol  # type: ignore


def _frozen_array(values, dtype, shape_tail: Tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=dtype)
    if arr.size == 0:
        arr = arr.reshape((0,) + shape_tail)
    if arr.shape[1:] != shape_tail:
        raise ValueError("%s must have shape (N%s), got %s" % (
            what, "".join(", %d" % d for d in shape_tail), arr.shape))
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class Frame:
    """One picture from a source: BGR uint8 HxWx3, with when and where it was taken."""

    image: np.ndarray
    index: int            # 0-based number of the frame in its source
    ts: float             # capture time, seconds since the epoch (UTC)
    mono: float           # capture time on time.monotonic(), for latencies
    file: str = ""        # the picture's file name, for sources that read files (images://)

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class TensorSpec:
    """What a model tensor looks like. Dynamic dimensions are -1."""

    name: str
    shape: Tuple[int, ...]
    dtype: str                                  # numpy dtype name: float32, float16, uint8, int8
    quantization: Optional[Tuple[float, int]] = None   # (scale, zero_point) for quantized tensors

    @property
    def layout(self) -> str:
        """NCHW or NHWC, guessed from where the 3-channel axis is (images only)."""
        if len(self.shape) == 4 and self.shape[1] in (1, 3) and self.shape[3] not in (1, 3):
            return "NCHW"
        return "NHWC"

    @property
    def hw(self) -> Tuple[int, int]:
        """(height, width) of an image input, -1 where dynamic."""
        if len(self.shape) != 4:
            raise ValueError("tensor %s has shape %s, not an image batch" % (self.name, self.shape))
        if self.layout == "NCHW":
            return int(self.shape[2]), int(self.shape[3])
        return int(self.shape[1]), int(self.shape[2])


@dataclass(frozen=True)
class ImageTransform:
    """How a source frame was mapped into the model input, so boxes can be mapped back.

    model_xy = source_xy * scale + pad ; source_xy = (model_xy - pad) / scale
    """

    src_width: int
    src_height: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Model-input pixel boxes [x1,y1,x2,y2] to source pixels, clipped to the frame."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0, self.src_width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0, self.src_height, out=out[:, 1::2])
        return out


def class_labels(names: Sequence[str], class_ids: Sequence[int]) -> Tuple[str, ...]:
    """The label of each class id: its name in `names`, or the class id if unnamed. The one
    place of that fallback: labelling (with_labels) and the result payload (agent.wire) use it."""
    return tuple(names[i] if 0 <= i < len(names) else str(i) for i in (int(c) for c in class_ids))


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes in source-frame pixels [x1, y1, x2, y2], with scores and classes. Validated once."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    labels: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        boxes = _frozen_array(self.boxes, np.float32, (4,), "boxes")
        scores = _frozen_array(self.scores, np.float32, (), "scores")
        class_ids = _frozen_array(self.class_ids, np.int64, (), "class_ids")
        if not len(boxes) == len(scores) == len(class_ids):
            raise ValueError("boxes, scores and class_ids differ in length: %d, %d, %d" % (
                len(boxes), len(scores), len(class_ids)))
        if self.labels and len(self.labels) != len(boxes):
            raise ValueError("labels has %d items for %d boxes" % (len(self.labels), len(boxes)))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "labels", tuple(self.labels))

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4)), np.zeros((0,)), np.zeros((0,)))

    def __len__(self) -> int:
        return len(self.scores)

    def with_labels(self, names: Sequence[str]) -> "Detections":
        """The same detections, labelled from a class-name list (class id if unnamed)."""
        return Detections(self.boxes, self.scores, self.class_ids,
                          class_labels(names, self.class_ids))


@dataclass(frozen=True, eq=False)
class Classifications:
    """Top-k classes of a whole frame, best first."""

    class_ids: np.ndarray
    scores: np.ndarray
    labels: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        class_ids = _frozen_array(self.class_ids, np.int64, (), "class_ids")
        scores = _frozen_array(self.scores, np.float32, (), "scores")
        if len(class_ids) != len(scores):
            raise ValueError("class_ids and scores differ in length")
        object.__setattr__(self, "class_ids", class_ids)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", tuple(self.labels))

    def __len__(self) -> int:
        return len(self.scores)

    def with_labels(self, names: Sequence[str]) -> "Classifications":
        """The same classes, labelled from a class-name list (class id if unnamed)."""
        return Classifications(self.class_ids, self.scores, class_labels(names, self.class_ids))


@dataclass(frozen=True, eq=False)
class FrameResult:
    """What the pipeline learned from one frame; the reporter turns it into the result payload."""

    frame_index: int
    width: int
    height: int
    ts: float
    timing_ms: Dict[str, float] = field(default_factory=dict)
    detections: Optional[Detections] = None
    classifications: Optional[Classifications] = None
    file: str = ""        # Frame.file: which picture it was

    @property
    def has_results(self) -> bool:
        found = self.detections if self.detections is not None else self.classifications
        return found is not None and len(found) > 0


# Precisions: the numeric format a loaded model computes in, the same meaning on every backend
# (an int8-quantized ONNX on ONNX Runtime and an INT8 TensorRT engine both say "int8"; a float
# model fed uint8 pixels is still "fp32").
FP32, FP16, INT8 = "fp32", "fp16", "int8"
PRECISIONS = (FP32, FP16, INT8)


@dataclass(frozen=True)
class BackendInfo:
    """What a loaded backend is, for health, metrics and logs."""

    name: str             # backend key: tensorrt, onnxruntime, tflite
    precision: str        # one of PRECISIONS
    device: str           # where it runs: "cpu", "gpu", "gpu:0", "dla:1"


class Backend(Protocol):
    """An inference runtime with one model loaded. Returns raw outputs; never decodes."""

    name: str
    input_spec: TensorSpec
    output_specs: List[TensorSpec]

    @property
    def info(self) -> BackendInfo:
        ...

    def infer(self, tensor: np.ndarray) -> List[np.ndarray]:
        ...

    def close(self) -> None:
        ...


class Decoder(Protocol):
    """Turns a model's raw outputs into results in source-frame pixels."""

    def __call__(self, outputs: List[np.ndarray], transform: ImageTransform):
        ...


# Camera states (CameraStatus.state)
CAMERA_RUNNING = "running"          # frames are arriving (or a file/folder is being read)
CAMERA_LOST = "camera_lost"         # a live source failed or stalled and is being reopened
CAMERA_STOPPED = "stopped"          # closed, or a file/folder reached its end
CAMERA_STATES = (CAMERA_RUNNING, CAMERA_LOST, CAMERA_STOPPED)


@dataclass(frozen=True)
class CameraStatus:
    """How a source is doing, as health and metrics report it. Counters only grow."""

    state: str = CAMERA_RUNNING      # one of CAMERA_STATES
    reconnects: int = 0              # reopened after a loss
    stalls: int = 0                  # losses because no frame came for stall_timeout_s
    dropped: int = 0                 # frames replaced before anyone read them


class Source(Protocol):
    """Frames from a camera, stream, file or directory. read() returns None at the end."""

    uri: str
    live: bool           # live sources drop stale frames; files/dirs may process every frame

    def read(self) -> Optional[Frame]:
        ...

    def status(self) -> CameraStatus:
        ...

    def close(self) -> None:
        ...
