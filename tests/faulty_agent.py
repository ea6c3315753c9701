"""`python tests/faulty_agent.py run ...`: the real agent, assembled from faulty parts, for tests.

While the file named by $EDGEAGENT_TEST_FAULT_FILE exists, its content picks the fault:
  hang            the backend's infer blocks (a stuck model or driver) until the file is removed
  raise           the backend's infer raises: a pipeline thread crashes
  camera-raise    the live camera hands the recovery thread a broken frame: a thread outside
                  the pipeline dies of a non-SourceError
Nothing is patched: the service is built as agent/cli.py builds it, with an Assembler whose
backend loader and source opener wrap the real ones."""

import os
import sys
import time

from agent import cli
from agent.daemon.assemble import load_backend, open_source_for
from agent.daemon.running import Assembler
from agent.sources import is_live, open_spec, parse_uri
from agent.sources.recovery import RecoveringSource

FAULT_FILE = os.environ["EDGEAGENT_TEST_FAULT_FILE"]


def fault() -> str:
    try:
        with open(FAULT_FILE) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return ""


class FaultyBackend:
    """The loaded backend, with an infer that hangs or raises while the fault file says so."""

    def __init__(self, backend) -> None:
        self._backend = backend

    def infer(self, tensor):
        while fault() in ("hang", "raise"):
            if fault() == "raise":
                raise RuntimeError("injected raise fault (tests/faulty_agent.py)")
            time.sleep(0.02)
        return self._backend.infer(tensor)

    def __getattr__(self, name: str):
        return getattr(self._backend, name)


class BrokenFrame:
    """What a buggy camera driver might hand over: touching it raises."""

    @property
    def index(self):
        raise RuntimeError("injected camera-raise fault (tests/faulty_agent.py)")


class FaultyCamera:
    """The opened camera; reads give a BrokenFrame while the fault file says camera-raise."""

    def __init__(self, source) -> None:
        self._source = source

    def read(self, *args, **kwargs):
        frame = self._source.read(*args, **kwargs)
        return BrokenFrame() if fault() == "camera-raise" else frame

    def __getattr__(self, name: str):
        return getattr(self._source, name)


def faulty_load(plan, config, progress=None):
    return FaultyBackend(load_backend(plan, config, progress))


def faulty_open(plan, config):
    """open_source_for, with the camera that the recovery thread reads wrapped."""
    camera = plan.profile.camera
    spec = parse_uri(plan.source_uri, camera.width, camera.height, camera.fps,
                     config.camera.loop)
    if not is_live(spec):
        return open_source_for(plan, config)
    return RecoveringSource(lambda: FaultyCamera(open_spec(spec)),
                            config.camera.stall_timeout_s, uri=spec.display_uri,
                            backoff_initial_s=config.camera.reconnect_initial_s,
                            backoff_max_s=config.camera.reconnect_max_s)


def print_line(data: bytes) -> None:
    sys.stdout.write(data.decode("utf-8") + "\n")
    sys.stdout.flush()


def main() -> int:
    """`run --config PATH [--print]`, built as agent/cli.py's cmd_run builds the service."""
    from agent.config.agent_config import load_config
    from agent.daemon.assemble import Overrides
    from agent.daemon.logs import setup_logging
    from agent.daemon.service import Service
    args = cli.build_parser().parse_args()
    config = load_config(args.config)
    setup_logging(config.log_level, config.log_json)
    echo = print_line if args.print_results else None
    service = Service(config, Overrides(), args.config, echo=echo,
                      assembler=Assembler(load=faulty_load, open_source=faulty_open))
    service.install_signal_handlers()
    return service.run()


if __name__ == "__main__":
    sys.exit(main())
