"""The service's side of remote commands: what ping, snapshot, reload and set_pipeline do.
Handlers run on the MQTT network thread: they read the snapshot tap or raise a flag, no more."""

import time
from typing import Callable, Dict, Optional, Tuple

from .commands import CommandError, CommandHandler
from .pipeline_spec import load_pipeline
from .snapshot import annotate, encode_jpeg
from .types import Frame, FrameResult


def build_command_handler(latest_frame: Callable[[], Optional[Tuple[Frame, FrameResult]]],
                          publish_snapshot: Callable[[bytes], None],
                          request_reload: Callable[[Optional[str]], None],
                          reply: Callable[[bytes], None]) -> CommandHandler:
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
    return CommandHandler(handlers, reply, load_pipeline)
