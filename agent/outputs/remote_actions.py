"""The service's side of remote commands: what ping, snapshot, reload and set_pipeline do.
Handlers run on the MQTT network thread: they read the snapshot tap or raise a flag, no more.

set_pipeline takes a shipped pipeline's name, or (with commands.pipeline_dir set) the name of a
.yaml file in that folder, or a path to one inside it. Anything else gets the same refusal,
which lists what may be chosen and nothing else."""

import os
import time
from typing import Callable, Dict, List, Optional, Tuple

from ..config import resources
from .remote_commands import CommandError, CommandHandler
from ..config.pipeline_spec import load_pipeline
from .snapshot import annotate, encode_jpeg
from ..types import Frame, FrameResult


_SUFFIXES = (".yaml", ".yml")


class PipelineChoice:
    """check_pipeline for set_pipeline: what a value may load, resolved; CommandError else."""

    def __init__(self, folder: Optional[str] = None) -> None:
        self.folder = os.path.realpath(folder) if folder else None

    def __call__(self, value: str) -> str:
        if "/" in value or value.endswith(_SUFFIXES):
            chosen = self._file_in_folder(value)
        else:
            chosen = self._by_name(value)
        if chosen is None:
            raise CommandError("set_pipeline: unknown pipeline %r; available: %s" % (
                value[:64], ", ".join(self.available()) or "none"))
        load_pipeline(chosen)          # the whole file checked before anything changes
        return chosen

    def available(self) -> List[str]:
        names = resources.list_names("pipelines")
        if self.folder is not None and os.path.isdir(self.folder):
            names += sorted(f for f in os.listdir(self.folder) if f.endswith(_SUFFIXES))
        return names

    def _by_name(self, name: str) -> Optional[str]:
        if self.folder is not None:
            for suffix in _SUFFIXES:
                candidate = os.path.join(self.folder, name + suffix)
                if os.path.isfile(candidate):
                    return candidate
        return name if resources.find("pipelines", name) else None

    def _file_in_folder(self, value: str) -> Optional[str]:
        if self.folder is None:
            return None
        path = os.path.realpath(os.path.join(self.folder, value))   # an absolute value wins
        inside = os.path.commonpath([path, self.folder]) == self.folder
        return path if inside and path.endswith(_SUFFIXES) and os.path.isfile(path) else None


def build_command_handler(latest_frame: Callable[[], Optional[Tuple[Frame, FrameResult]]],
                          publish_snapshot: Callable[[bytes], None],
                          request_reload: Callable[[Optional[str]], None],
                          reply: Callable[[bytes], None],
                          pipeline_dir: Optional[str] = None) -> CommandHandler:
    started = time.monotonic()

    def ping(args) -> Dict[str, object]:
        return {"pong": True, "uptime_s": round(time.monotonic() - started, 1)}

    def snapshot(args) -> Dict[str, object]:
        latest = latest_frame()
        if latest is None:
            raise CommandError("snapshot: no frame processed yet")
        frame, result = latest
        jpeg = encode_jpeg(annotate(frame.image, result), args.get("quality", 80))
        publish_snapshot(jpeg)
        return {"bytes": len(jpeg), "frame": frame.index}

    def reload(args) -> Dict[str, object]:
        request_reload(None)
        return {"reloading": True}

    def set_pipeline(args) -> Dict[str, object]:
        request_reload(args["pipeline"])
        return {"pipeline": args["pipeline"]}

    handlers = {"ping": ping, "snapshot": snapshot, "reload": reload,
                "set_pipeline": set_pipeline}
    return CommandHandler(handlers, reply, PipelineChoice(pipeline_dir))
