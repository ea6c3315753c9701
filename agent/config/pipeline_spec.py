"""A pipeline file (pipelines/*.yaml): which model per backend, how to prepare frames, how to
decode outputs, which labels, which default source. Loading validates everything but the parts
that need the model (preprocess/decoder are checked again against the loaded model)."""

import os
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Dict, Mapping, Optional, Tuple

from . import resources
from ..checks import (need_choice, need_int, need_list, need_mapping, need_str, reject_unknown,
                     where)
from ..errors import ConfigError
from ..processing.decoders import check_decoder_keys
from ..processing.preprocess_config import PreprocessConfig
from ..backends.spec import BACKEND_KEYS
from .yamlio import read_yaml

KEYS = ("name", "description", "task", "models", "input_size", "preprocess", "decoder", "labels",
        "labels_file", "source")
TASKS = ("detect", "classify")


@dataclass(frozen=True)
class PipelineSpec:
    name: str
    path: str
    task: str
    models: Dict[str, str]                 # backend key -> absolute model path
    preprocess: PreprocessConfig
    decoder: Mapping
    labels: Tuple[str, ...] = ()
    input_size: Optional[Tuple[int, int]] = None   # (width, height) for dynamic-shape models
    source: Optional[str] = None
    description: str = ""
    labels_key: str = "labels"             # where the labels came from, for messages

    def model_for(self, backend_key: str) -> Optional[str]:
        return self.models.get(backend_key)

    @property
    def model_name(self) -> str:
        first = next(iter(self.models.values()))
        return os.path.splitext(os.path.basename(first))[0]


def load_pipeline(name_or_path: str) -> PipelineSpec:
    """A shipped pipeline by name, or a pipeline file by path."""
    if name_or_path.endswith((".yaml", ".yml")) or os.sep in name_or_path:
        path = os.path.abspath(name_or_path)
        if not os.path.isfile(path):
            raise ConfigError("%s: pipeline file not found" % path)
    else:
        path = resources.find("pipelines", name_or_path)
        if path is None:
            raise ConfigError("unknown pipeline %r; shipped pipelines: %s (or give a path to a "
                              ".yaml file)" % (name_or_path, ", ".join(resources.list_names(
                                  "pipelines"))))
    return pipeline_from_dict(read_yaml(path), path)


def pipeline_from_dict(data: Mapping, path: str) -> PipelineSpec:
    data = need_mapping(data, path, "")
    reject_unknown(data, KEYS, path)
    for required in ("name", "models", "decoder"):
        if required not in data:
            raise ConfigError("%s: missing; every pipeline names it" % where(path, required))
    decoder = need_mapping(data["decoder"], path, "decoder")
    check_decoder_keys(decoder, path)     # typos fail here, before any model is loaded
    return PipelineSpec(
        name=need_str(data["name"], path, "name"),
        path=path,
        task=need_choice(data.get("task", "detect"), TASKS, path, "task"),
        models=_models(data["models"], path),
        preprocess=PreprocessConfig.from_dict(data.get("preprocess"), path),
        decoder=dict(decoder),
        labels=_labels(data, path),
        input_size=_input_size(data.get("input_size"), path),
        source=need_str(data["source"], path, "source") if data.get("source") else None,
        description=str(data.get("description", "")),
        labels_key="labels_file" if "labels_file" in data else "labels")


def resolve_model_path(value: str, pipeline_path: str) -> str:
    """Absolute path of a model named in a pipeline: absolute, beside the pipeline file, or in
    the shipped models folder."""
    value = os.path.expanduser(value)
    if os.path.isabs(value):
        return value
    beside = os.path.normpath(os.path.join(os.path.dirname(pipeline_path), value))
    if os.path.exists(beside):
        return beside
    shipped = os.path.join(resources.data_dir("models"), os.path.basename(value))
    return shipped if os.path.exists(shipped) else beside


def _models(value, path: str) -> Dict[str, str]:
    models = need_mapping(value, path, "models")
    if not models:
        raise ConfigError("%s: empty; name a model for at least one of %s" % (
            where(path, "models"), ", ".join(BACKEND_KEYS)))
    reject_unknown(models, BACKEND_KEYS, path, "models.")
    return {key: resolve_model_path(need_str(v, path, "models." + key), path)
            for key, v in models.items()}


def _labels(data: Mapping, path: str) -> Tuple[str, ...]:
    if "labels" in data and "labels_file" in data:
        raise ConfigError("%s: set labels or labels_file, not both" % path)
    if "labels" in data:
        return tuple(need_list(data["labels"], path, "labels"))
    if "labels_file" not in data:
        return ()
    labels_path = resolve_model_path(need_str(data["labels_file"], path, "labels_file"), path)
    try:
        with open(labels_path) as f:
            return tuple(line.strip() for line in f if line.strip())
    except OSError as why:
        raise ConfigError("%s = %s: cannot read labels (%s)" % (
            where(path, "labels_file"), labels_path, why.strerror))


def _input_size(value, path: str) -> Optional[Tuple[int, int]]:
    if value is None:
        return None
    size = need_list(value, path, "input_size", int, length=2)
    width = need_int(size[0], path, "input_size[0] (width)", 16, 8192)
    height = need_int(size[1], path, "input_size[1] (height)", 16, 8192)
    return width, height
