"""Decoders: a model's raw outputs -> Detections/Classifications in source-frame pixels.

``build_decoder`` reads the pipeline's ``decoder:`` section and checks, once at start-up, that
the model's outputs fit the chosen decoder, so a mismatch fails before the first frame.
Pass the input spec with its real size (``Preprocessor.tensor_spec``) when the model's input
is dynamic.
"""

from typing import List, Mapping

from ...checks import need_choice, need_mapping, need_str, reject_unknown, where
from ...errors import ConfigError
from ...types import Decoder, TensorSpec
from .blazeface import BlazeFaceDecoder
from .classify import ClassifyDecoder
from .common import SECTION
from .ssd import SsdDecoder
from .yolov5 import YoloV5Decoder
from .yolov8 import YoloV8Decoder

DECODERS = {
    "blazeface": BlazeFaceDecoder,
    "classify": ClassifyDecoder,
    "ssd": SsdDecoder,
    "yolov5": YoloV5Decoder,
    "yolov8": YoloV8Decoder,
}


def build_decoder(cfg: Mapping, path: str, input_spec: TensorSpec,
                  output_specs: List[TensorSpec]) -> Decoder:
    """The decoder named by ``cfg['type']``, configured and checked against the model."""
    kind = check_decoder_keys(cfg, path)
    return DECODERS[kind].from_dict(cfg, path, input_spec, list(output_specs))


def check_decoder_keys(cfg: Mapping, path: str) -> str:
    """The decoder type, once the section names a known type and only that type's keys (what
    a pipeline file can be checked for without its model); values are checked by from_dict."""
    cfg = need_mapping(cfg, path, "decoder")
    if "type" not in cfg:
        raise ConfigError("%s: missing; set it to one of %s" % (
            where(path, SECTION + "type"), ", ".join(sorted(DECODERS))))
    kind = need_choice(need_str(cfg["type"], path, SECTION + "type"), sorted(DECODERS), path,
                       SECTION + "type")
    reject_unknown(cfg, ("type",) + tuple(DECODERS[kind].KEYS), path, SECTION)
    return kind


__all__ = ["DECODERS", "build_decoder", "check_decoder_keys", "BlazeFaceDecoder", "ClassifyDecoder", "SsdDecoder",
           "YoloV5Decoder", "YoloV8Decoder"]
