"""`edgeagent validate`: every check `run` makes before its first frame, in the same order and
with the same one-line errors and exit codes, without opening a camera or a broker:

config -> profile, pipeline (decoder keys included), backend name -> state_dir writable ->
the model loaded by the backend `run` would pick, and checked against the pipeline with one
blank frame (agent/daemon/model_checks.py) -> the source URI (syntax, scheme, keys; a file must
exist and decode)."""

from typing import NamedTuple, Optional

from .assemble import Overrides, Plan, build_inference, load_backend, make_plan
from ..config.agent_config import AgentConfig
from .lifecycle import check_state_dir, close_quietly, with_state_directory
from ..sources import check_source


class Checked(NamedTuple):
    plan: Plan
    backend: str          # the backend `run` would use here
    model: str


def preflight(config: AgentConfig, overrides: Overrides, state_dir: bool = True) -> Checked:
    """Raises the EdgeAgentError `run` would raise before its first frame; else what runs.
    state_dir=False skips the state folder (a pipeline checked alone)."""
    config = with_state_directory(config)
    plan = make_plan(config, overrides)
    if state_dir:
        check_state_dir(config.state_dir)
    backend = load_backend(plan, config)
    try:
        build_inference(plan, backend)
    finally:
        close_quietly(backend)
    camera = plan.profile.camera
    if plan.source_uri:
        check_source(plan.source_uri, camera.width, camera.height, camera.fps,
                     loop=config.camera.loop)
    model = plan.pipeline.model_for(backend.name) or ""
    return Checked(plan, backend.name, model)


def ok_line(checked: Checked, config_path: Optional[str], device_id: str) -> str:
    plan = checked.plan
    if config_path is not None:
        return "%s: ok (pipeline %s, device %s)" % (config_path, plan.pipeline.name, device_id)
    return "%s: ok (pipeline %s, model %s on %s)" % (plan.pipeline.path, plan.pipeline.name,
                                                     checked.model, checked.backend)
