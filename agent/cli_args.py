"""The edgeagent argument parser: one function per command adds its arguments.

Kept apart from cli.py (which maps commands to functions and errors to exit codes), so neither
grows past one screen of options. The tools' own options stay in their modules' add_arguments."""

import argparse
import sys

from . import __version__
from .types import PRECISIONS

DESCRIPTION = "edgeagent command line. Thin: parse, call one function, map errors to exit codes."


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
    p.add_argument("--precision", choices=PRECISIONS)
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
    parser = argparse.ArgumentParser(prog="edgeagent", description=DESCRIPTION)
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
