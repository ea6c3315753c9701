"""edgeagent command line. Thin: parse, call one function, map errors to exit codes.

Every EdgeAgentError is printed as one line on stderr with a non-zero exit code; anything else
is a bug and keeps its traceback."""

import argparse
import dataclasses  # novm: the dataclasses backport serves 3.6
import json
import logging
import os
import sys
from typing import List, Optional

from . import __version__
from .errors import EdgeAgentError, OutputError

log = logging.getLogger("edgeagent")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run the agent (the systemd service runs this)")
    p.add_argument("--config", help="config YAML (default: built-in defaults)")
    p.add_argument("--pipeline", help="pipeline name (shipped) or path to a pipeline .yaml")
    p.add_argument("--profile", help="force a device profile instead of detecting the board")
    p.add_argument("--backend", help="force one backend instead of the profile's order")
    p.add_argument("--source", help="source URI: file://, images://, rtsp://, http://, "
                                    "v4l2:///dev/videoN, csi://N, picam://N, synthetic://")
    p.add_argument("--max-frames", type=int, metavar="N", help="stop after N frames")
    p.add_argument("--print", dest="print_results", action="store_true",
                   help="write each result payload as one JSON line on stdout")
    p.add_argument("--print-all", action="store_true",
                   help="as --print, plus frames without results (marked \"published\": false, "
                        "no seq: they are not sent)")
    p.add_argument("--no-mqtt", action="store_true", help="do not connect to a broker")
    p.add_argument("--state-dir", help="outbox and engine cache folder (overrides config)")
    p.add_argument("--log-json", action="store_true", help="log one JSON object per line")
    p.add_argument("--log-level", choices=("debug", "info", "warning", "error"))


def _add_detect(sub) -> None:
    p = sub.add_parser("detect", help="show the device, its profile and which backends can run")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--profile", help="force a profile (as run --profile)")
    p.add_argument("--config", help="config YAML whose device.profile applies")


def _add_validate(sub) -> None:
    p = sub.add_parser("validate", help="run every check `run` makes before its first frame "
                                        "(model included), without opening the camera")
    p.add_argument("--config", help="config YAML (default: built-in defaults, as run)")
    p.add_argument("--pipeline", help="check this pipeline (name or .yaml) instead of the "
                                      "config's; alone: the pipeline and its model only")
    p.add_argument("--profile", help="as run --profile")
    p.add_argument("--backend", help="as run --backend")
    p.add_argument("--source", help="as run --source (checked without opening a camera)")
    p.add_argument("--state-dir", help="as run --state-dir")


def _add_build_engine(sub) -> None:
    p = sub.add_parser("build-engine", help="build (or verify) the TensorRT engine of a pipeline")
    p.add_argument("--pipeline", required=True)
    p.add_argument("--config", help="config YAML (state_dir, device.profile)")
    p.add_argument("--profile", help="force a device profile")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"))
    p.add_argument("--workspace", type=int, metavar="MB")
    p.add_argument("--cache-dir", help="engine cache folder (default <state_dir>/engines)")
    p.add_argument("--calibration-dir", help="folder of real images for INT8 calibration")
    p.add_argument("--force", action="store_true", help="rebuild even when a valid engine exists")
    from .tools import trt_int8
    trt_int8.add_arguments(p)


def _add_unit(sub) -> None:
    p = sub.add_parser("unit", help="print the systemd drop-in this board needs (devices, CSI)")
    p.add_argument("--profile", help="a profile name or file (default: detect the board)")
    p.add_argument("--config", help="config YAML whose device.profile applies (as run)")
    p.add_argument("--output", metavar="DIR", help="write DIR/50-board.conf instead of printing "
                   "(DIR: /etc/systemd/system/edgeagent.service.d)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeagent", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version="edgeagent " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_run(sub)
    _add_detect(sub)
    _add_validate(sub)
    _add_build_engine(sub)
    _add_model_commands(sub)
    _add_unit(sub)
    _add_workstation_commands(sub)
    return parser


def _add_model_commands(sub) -> None:
    """inspect / bench: the model tools a new user needs; they run on devices too."""
    from .tools import inspect_cmd
    inspect_cmd.add_arguments(sub.add_parser(
        "inspect", help="show a model's inputs/outputs, guess its decoder, write a pipeline"))
    from .tools import bench_cmd
    bench_cmd.add_arguments(sub.add_parser(
        "bench", help="measure a pipeline per backend and precision (inference, end-to-end)"))
    if sys.version_info >= (3, 8):     # onnxruntime.quantization: a workstation tool
        from .tools import quantize
        quantize.add_arguments(sub.add_parser(
            "quantize", help="INT8 (ONNX Runtime QDQ) calibrated on your images, behind an "
                             "accuracy gate"))


def cmd_inspect(args) -> int:
    from .tools import inspect_cmd
    return inspect_cmd.run(args)


def cmd_quantize(args) -> int:
    from .tools import quantize
    return quantize.run(args)


def cmd_bench(args) -> int:
    from .tools import bench_cmd
    return bench_cmd.run(args)


def _add_workstation_commands(sub) -> None:
    """deploy/monitor need Python 3.8+ and are never imported by `edgeagent run`."""
    if sys.version_info < (3, 8):
        return
    from .fleet.deploy import cli as deploy_cli
    deploy_cli.add_arguments(sub.add_parser("deploy", help="deploy to devices over SSH"))
    from .fleet import monitor
    monitor.add_arguments(sub.add_parser("monitor", help="watch devices' status, health and "
                                                        "results over MQTT"))
    from .fleet.ingest import cli as ingest_cli
    ingest_cli.add_arguments(sub.add_parser("ingest", help="results and health from MQTT into "
                                                           "PostgreSQL (shared subscriptions)"))


def _require_cv2() -> None:
    """A missing OpenCV is exit 7 and one line here, not a traceback from the pipeline."""
    from .board.device import ROOT_ENV
    from .daemon.opencv import require_cv2
    require_cv2(os.environ.get(ROOT_ENV, "/"))


def cmd_run(args) -> int:
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
    service = Service(config, overrides, args.config, args.max_frames, echo)
    service.install_signal_handlers()
    return service.run()


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
    if args.precision == "int8" and args.calibration_dir:
        from .tools.trt_int8 import gated_int8_build
        print(gated_int8_build(args, build_engine_for_pipeline))
        return 0
    print(build_engine_for_pipeline(args))
    return 0


def cmd_unit(args) -> int:
    from .board.device import ROOT_ENV
    from .board.sandbox import drop_in_for, write_drop_in
    profile = args.profile
    if profile is None and args.config:
        from .config.agent_config import load_config
        profile = load_config(args.config).profile
    _, text = drop_in_for(profile, os.environ.get(ROOT_ENV, "/"))
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
