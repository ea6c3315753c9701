"""Backend registry and selection.

Each backend is one module exposing KEY, ``probe() -> Optional[str]`` (None when the runtime can be
imported, else why not) and one class with ``from_options(model_path, options, context)`` (spec.BackendContext).
Modules are imported lazily: importing tensorrt or onnxruntime costs seconds on a Nano.
"""

import importlib
import logging
from typing import Callable, List, Mapping, Optional, Sequence, Tuple, Union

from ..errors import BackendUnavailable, ConfigError
from ..types import Backend
from .spec import BACKEND_KEYS, BackendContext, context_of

log = logging.getLogger(__name__)

# key -> module holding its backend class; the keys are spec.BACKEND_KEYS, in its order
REGISTRY = tuple(zip(BACKEND_KEYS, ("agent.backends.tensorrt.backend",
                                    "agent.backends.onnxruntime", "agent.backends.tflite")))


def _module(key: str):
    modules = dict(REGISTRY)
    if key not in modules:
        raise ConfigError("unknown backend %r; known backends: %s" % (key, ", ".join(BACKEND_KEYS)))
    try:
        return importlib.import_module(modules[key])
    except ImportError as why:
        raise BackendUnavailable("%s: backend module missing from this install (%s)" % (key, why))


def probe(key: str) -> Optional[str]:
    """None when the backend's runtime can be loaded here, else the reason it cannot."""
    try:
        return _module(key).probe()
    except BackendUnavailable as why:
        return why.detail


def availability() -> List[Tuple[str, Optional[str]]]:
    """(key, reason-or-None) for every known backend, for `edgeagent detect`."""
    return [(key, probe(key)) for key in BACKEND_KEYS]


def runtime_version(key: str) -> Optional[str]:
    version_of = getattr(_module(key), "runtime_version", None)
    return version_of() if version_of is not None else None


def load(key: str, model_path: str, options: Mapping, where: Union[str, BackendContext]
         ) -> Backend:
    """One backend with its model loaded; BackendUnavailable or ModelError when it cannot."""
    module = _module(key)
    reason = module.probe()
    if reason is not None:
        raise BackendUnavailable(reason)
    # a typed options instance (already checked) goes as it is; a mapping as a fresh copy
    given = dict(options) if isinstance(options, Mapping) else options
    return module.BACKEND_CLASS.from_options(model_path, given, context_of(where))


def select(order: Sequence[str], model_for: Callable[[str], Optional[str]],
           options_for: Callable[[str], Mapping], where: Union[str, BackendContext]) -> Backend:
    """The first backend of `order` that can run the pipeline's model here.

    Each skipped candidate is logged with its reason; a model that is broken (not merely
    unsupported by one runtime) stops the walk, because no other backend would fix it.
    """
    reasons = []
    for key in order:
        model_path = model_for(key)
        if model_path is None:
            why = "the pipeline names no model for it"
        else:
            try:
                backend = load(key, model_path, options_for(key), where)
                log.info("backend %s selected (model %s)", key, model_path)
                return backend
            except BackendUnavailable as error:
                why = error.detail
        log.info("backend %s skipped: %s", key, why)
        reasons.append("%s: %s" % (key, why))
    raise BackendUnavailable("no backend of [%s] can run %s here (%s)" % (
        ", ".join(order), context_of(where).where, "; ".join(reasons)))


