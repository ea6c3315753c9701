"""edgeagent command line. Thin: parse, call one function, map errors to exit codes.

Every EdgeAgentError is printed as one line on stderr with a non-zero exit code; anything else
is a bug and keeps its traceback."""

import dataclasses  # novm: the dataclasses backport serves 3.6
import json
import logging
import os
import sys
from typing import List, Optional

from .cli_args import build_parser
from .errors import EdgeAgentError, OutputError
from .types import INT8

log = logging.getLogger("edgeagent")


def cmd_inspect(args) -> int:
    from .tools import inspect_cmd
    return inspect_cmd.run(args)


def cmd_quantize(args) -> int:
    from .tools import quantize
    return quantize.run(args)


def cmd_bench(args) -> int:
    from .tools import bench_cmd
    return bench_cmd.run(args)


def _require_cv2() -> None:
    """A missing OpenCV is exit 7 and one line here, not a traceback from the pipeline."""
    from .board.device import ROOT_ENV
    from .daemon.opencv import require_cv2
    require_cv2(os.environ.get(ROOT_ENV, "/"))


def cmd_run(args) -> int:
    from .daemon.lifecycle import Signals
    # First of all: from here on a Ctrl-C or SIGTERM while loading is a stop request (a flag),
    # not an exception that an import on the way could swallow (Python 3.6's uuid and cv2's
    # loader catch everything in places).
    signals = Signals().install()
    _require_cv2()
    from .config.agent_config import load_config
    from .daemon.logs import setup_logging
    from .daemon.service import Service
    from .daemon.assemble import Overrides
    config = load_config(args.config)
    changes = {}
    if args.no_mqtt:
        changes["mqtt"] = dataclasses.replace(config.mqtt, enabled=False)
    if args.state_dir:
        changes["state_dir"] = args.state_dir
    config = dataclasses.replace(config, **changes)
    setup_logging(args.log_level or config.log_level, args.log_json or config.log_json)
    overrides = Overrides(args.pipeline, args.profile, args.backend, args.source)
    echo = _stdout_line if args.print_results else None
    if args.print_all:
        echo = _EveryFrame()
    return Service(config, overrides, args.config, args.max_frames, echo,
                   signals=signals).run()


class _EveryFrame:
    """The --print-all echo: the reporter sees every_frame and echoes unpublished frames too."""

    every_frame = True

    def __call__(self, data: bytes) -> None:
        _stdout_line(data)


def _stdout_line(data: bytes) -> None:
    try:
        sys.stdout.write(data.decode("utf-8") + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        raise OutputError("stdout closed (broken pipe): nothing reads --print any more; the "
                          "results stay in the outbox")


def cmd_detect(args) -> int:
    from .tools.detect import detect_report, format_report
    report = detect_report(args.profile, args.config)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(format_report(report))
    return 0


def cmd_validate(args) -> int:
    _require_cv2()
    from .daemon.assemble import Overrides
    from .config.agent_config import load_config
    from .daemon.preflight import ok_line, preflight
    config = load_config(args.config)
    if args.state_dir:
        config = dataclasses.replace(config, state_dir=args.state_dir)
    overrides = Overrides(args.pipeline, args.profile, args.backend, args.source)
    alone = args.pipeline is not None and args.config is None and args.state_dir is None
    checked = preflight(config, overrides, state_dir=not alone)   # a pipeline alone: no state
    print(ok_line(checked, args.config, config.device_id))
    return 0


def cmd_build_engine(args) -> int:
    from .daemon.logs import setup_logging
    from .tools.build_engine_cmd import build_engine_for_pipeline
    setup_logging("info")
    if args.precision == INT8 and args.calibration_dir:
        from .tools.trt_int8 import gated_int8_build
        print(gated_int8_build(args, build_engine_for_pipeline))
        return 0
    print(build_engine_for_pipeline(args))
    return 0


def cmd_unit(args) -> int:
    from .board.device import ROOT_ENV
    from .board.sandbox import render_drop_in, write_drop_in
    from .config.profiles import profile_for_this_board
    profile = args.profile
    if profile is None and args.config:
        from .config.agent_config import load_config
        profile = load_config(args.config).profile
    _, chosen, _ = profile_for_this_board(profile, os.environ.get(ROOT_ENV, "/"))
    text = render_drop_in(chosen.name, chosen.sandbox)
    if args.output:
        print(write_drop_in(args.output, text))
    else:
        sys.stdout.write(text)
    return 0


COMMANDS = {"run": cmd_run, "detect": cmd_detect, "validate": cmd_validate,
            "build-engine": cmd_build_engine, "inspect": cmd_inspect,
            "bench": cmd_bench, "quantize": cmd_quantize, "unit": cmd_unit}


EXIT_INTERRUPTED = 130      # 128 + SIGINT, as a shell reports Ctrl-C
EXIT_BROKEN_PIPE = 141      # 128 + SIGPIPE: stdout's reader went away (`edgeagent detect | head`)


def main(argv: Optional[List[str]] = None) -> int:
    name = "edgeagent"
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 2
        name = "edgeagent " + args.command
        return _command_for(args.command)(args)
    except EdgeAgentError as error:
        sys.stderr.write("%s: %s\n" % (name, error))
        return error.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % name)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        sys.stderr.write("%s: stdout closed before the output was written (broken pipe)\n"
                         % name)
        return EXIT_BROKEN_PIPE
    finally:
        _flush_stdout()


def _command_for(command: str):
    if command == "deploy":
        from .fleet.deploy import cli as deploy_cli
        return deploy_cli.run
    if command == "monitor":
        from .fleet.monitor import run
        return run
    if command == "ingest":
        from .fleet.ingest.cli import run
        return run
    return COMMANDS[command]


def _flush_stdout() -> None:
    """Flush now, so a closed stdout fails here and not in the interpreter's exit."""
    try:
        sys.stdout.flush()
    except (BrokenPipeError, ValueError):
        _silence_stdout()


def _silence_stdout() -> None:
    """Point stdout at /dev/null: Python flushes it once more at exit, and a closed pipe would
    print a second error there."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
