"""Camera recovery time against outage length, on real cameras: ffmpeg serving MJPEG over HTTP
and GStreamer's RTSP server (tests/streams.py starts both, as the tests do). Each outage stops
the camera for N seconds and starts it again; recovery is the time from the camera's return to
the first new frame through the agent's RecoveringSource with its default backoff (0.2 s
doubling to a 2 s cap, with jitter). The promise: <= 5 s whatever the outage length.

    python benchmarks/bench_camera_recovery.py --camera http-mjpeg --outages 1,5,15,30,60

Prints one line per outage as it goes, then min/median/max per outage length."""

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "tests"))
sys.path.insert(0, os.path.dirname(HERE))

from agent.sources import CAMERA_LOST, open_recovering  # noqa: E402
from streams import FfmpegStream, RtspStream, next_frame  # noqa: E402

DEFAULT_OUTAGES = "1,1,1,1,1,5,5,5,5,5,15,15,15,15,30,30,30,60,60,60"   # 20 outages, 1-60 s
CAMERAS = {
    "http-mjpeg": lambda tmp: FfmpegStream(size=(160, 120), fps=15,
                                           log_path=os.path.join(tmp, "ffmpeg.log")),
    "rtsp-tcp": lambda tmp: RtspStream(size=(160, 120), fps=15,
                                       log_path=os.path.join(tmp, "rtsp.log")),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--camera", choices=sorted(CAMERAS), default="http-mjpeg")
    parser.add_argument("--outages", default=DEFAULT_OUTAGES, help="seconds, comma-separated")
    args = parser.parse_args()
    outages = [float(x) for x in args.outages.split(",")]
    results = {}
    with tempfile.TemporaryDirectory() as tmp, CAMERAS[args.camera](tmp) as camera:
        source = open_recovering(camera.url + "?open_timeout_ms=3000&read_timeout_ms=4000",
                                 stall_timeout_s=2.0)
        try:
            if next_frame(source, 0.0, 30.0) is None:
                print("%s: no first frame" % args.camera)
                return 1
            for number, outage_s in enumerate(outages, 1):
                dark = time.monotonic()
                camera.stop()
                while source.state != CAMERA_LOST and time.monotonic() - dark < 15.0:
                    time.sleep(0.02)
                noticed = time.monotonic() - dark
                time.sleep(max(0.0, outage_s - (time.monotonic() - dark)))
                camera.start()
                back = time.monotonic()
                frame = next_frame(source, back, 30.0)
                recovery = frame.mono - back if frame is not None else float("inf")
                results.setdefault(outage_s, []).append(recovery)
                print("[%2d/%d] %s outage %4.0f s: loss seen after %.2f s, frames again %.2f s "
                      "after the camera returned" % (number, len(outages), args.camera, outage_s,
                                                     noticed, recovery), flush=True)
        finally:
            source.close()
    for length, times in sorted(results.items()):
        print("%s %4.0f s outage: recovery min %.2f / median %.2f / max %.2f s (n=%d)" % (
            args.camera, length, min(times), statistics.median(times), max(times), len(times)))
    worst = max(max(t) for t in results.values())
    print("%s: worst recovery %.2f s over %d outages (promise: <= 5 s)" % (
        args.camera, worst, len(outages)))
    return 0 if worst <= 5.0 else 1


if __name__ == "__main__":
    sys.exit(main())
