"""Builds the parts the service runs from config data: profile, pipeline, backend, model stages,
source. Each step fails with one clear error; nothing here starts a thread."""

import logging
import os
from dataclasses import dataclass  # novm: the dataclasses backport serves 3.6
from typing import Callable, Optional

from .. import backends
from ..config.agent_config import AgentConfig
from ..board.device import DeviceInfo
from ..errors import ConfigError
from ..inference import Inference
from .model_checks import check_input_size, check_on_blank_frame
from ..config.pipeline_spec import PipelineSpec, load_pipeline
from ..config.profiles import Profile, profile_for_this_board
from ..sources import open_recovering
from ..types import Backend, Source

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Overrides:
    """Command-line choices that win over the config file."""

    pipeline: Optional[str] = None
    profile: Optional[str] = None
    backend: Optional[str] = None
    source: Optional[str] = None


@dataclass(frozen=True)
class Plan:
    """What will run, decided before anything heavy is loaded."""

    device: DeviceInfo
    profile: Profile
    profile_reason: str
    pipeline: PipelineSpec
    backend_order: tuple
    source_uri: str


def make_plan(config: AgentConfig, overrides: Overrides) -> Plan:
    device, profile, reason = profile_for_this_board(overrides.profile or config.profile)
    pipeline = load_pipeline(overrides.pipeline or config.pipeline)
    forced = overrides.backend or config.backend
    order = (forced,) if forced else profile.backends
    if forced and forced not in backends.BACKEND_KEYS:
        raise ConfigError("--backend %s: unknown backend; known: %s" % (
            forced, ", ".join(backends.BACKEND_KEYS)))
    uri = overrides.source or config.source or pipeline.source or profile.camera.default_source
    return Plan(device, profile, reason, pipeline, tuple(order), uri)


def backend_context(plan: Plan, config: AgentConfig,
                    progress: Optional[Callable] = None) -> backends.BackendContext:
    """What only the service knows, the same for every backend (each takes what it uses)."""
    return backends.BackendContext(plan.profile.path, os.path.join(config.state_dir, "engines"),
                                   plan.pipeline.input_size, progress)


def load_backend(plan: Plan, config: AgentConfig, progress: Optional[Callable] = None) -> Backend:
    """The first backend of the plan's order that runs here, given the profile's options as
    they were checked when the profile was read."""
    return backends.select(plan.backend_order, plan.pipeline.model_for,
                           plan.profile.typed_options, backend_context(plan, config, progress))


def build_inference(plan: Plan, backend: Backend) -> Inference:
    """The model stages, checked against the loaded model (agent/daemon/model_checks.py) with one
    blank frame before the first real one."""
    spec = plan.pipeline
    model = spec.model_for(getattr(backend, "name", "")) or next(iter(spec.models.values()))
    check_input_size(spec, backend.input_spec, model)
    inference = Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path,
                                     spec.labels, spec.input_size)
    check_on_blank_frame(spec, inference, model)
    return inference


def open_source_for(plan: Plan, config: AgentConfig) -> Source:
    camera = plan.profile.camera
    return open_recovering(plan.source_uri, camera.width, camera.height, camera.fps,
                           loop=config.camera.loop, stall_timeout_s=config.camera.stall_timeout_s,
                           backoff_initial_s=config.camera.reconnect_initial_s,
                           backoff_max_s=config.camera.reconnect_max_s)
