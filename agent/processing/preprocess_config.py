"""The ``preprocess:`` section of a pipeline, as a value: readable without OpenCV, so that
loading a pipeline (validate, detect, the CLI's parser) never needs cv2."""

from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Any, Mapping, Tuple

from ..checks import need_choice, need_int, need_mapping, need_number, reject_unknown, where
from ..errors import ConfigError

SECTION = "preprocess."
RESIZE_MODES = ("letterbox", "stretch")
COLORS = ("rgb", "bgr")
LAYOUTS = ("auto", "NCHW", "NHWC")
SUPPORTED_DTYPES = ("float32", "float16", "uint8", "int8")


@dataclass(frozen=True)
class PreprocessConfig:
    """The ``preprocess:`` section of a pipeline; mean/std are per channel in the model's order."""

    resize: str = "letterbox"
    color: str = "rgb"
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    pad_value: int = 114
    layout: str = "auto"
    source: str = ""              # the file it came from, for error messages

    @classmethod
    def from_dict(cls, d: Mapping, path: str) -> "PreprocessConfig":
        d = need_mapping(d if d is not None else {}, path, "preprocess")
        reject_unknown(d, ("resize", "color", "mean", "std", "pad_value", "layout"), path, SECTION)
        get = d.get
        return cls(
            resize=need_choice(get("resize", "letterbox"), RESIZE_MODES, path, SECTION + "resize"),
            color=need_choice(get("color", "rgb"), COLORS, path, SECTION + "color"),
            mean=_three_numbers(get("mean", [0, 0, 0]), path, "mean", positive=False),
            std=_three_numbers(get("std", [1, 1, 1]), path, "std", positive=True),
            pad_value=need_int(get("pad_value", 114), path, SECTION + "pad_value", 0, 255),
            layout=need_choice(get("layout", "auto"), LAYOUTS, path, SECTION + "layout"),
            source=path)


def _three_numbers(value: Any, path: str, key: str, positive: bool) -> Tuple[float, float, float]:
    full_key = SECTION + key
    if not isinstance(value, list) or len(value) != 3:
        raise ConfigError("%s = %r: must be a list of 3 numbers, one per channel in the model's "
                          "channel order, e.g. [127.5, 127.5, 127.5]" % (
                              where(path, full_key), value))
    numbers = tuple(need_number(v, path, "%s[%d]" % (full_key, i)) for i, v in enumerate(value))
    if positive and any(n <= 0 for n in numbers):
        raise ConfigError("%s = %r: every value must be > 0 (values are divided by it)" % (
            where(path, full_key), value))
    return numbers  # type: ignore
