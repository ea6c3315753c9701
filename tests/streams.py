"""Real live streams for tests: ffmpeg serving a test pattern over HTTP on 127.0.0.1, like an
IP camera, with the failures a camera has: it can die (stop), come back (start/restart) and
stall with the connection open (stall: SIGSTOP; resume: SIGCONT).

    with FfmpegStream(size=(320, 240), fps=15) as cam:
        source = open_source(cam.url)

    FfmpegStream(input_path="sample.avi")   # loops an MJPEG .avi (e.g. a face) instead


ffmpeg's HTTP server (-listen 1) serves one client and exits when that client leaves; like a
camera that accepts a new viewer, the helper starts a fresh ffmpeg then, until stop().
Needs the ffmpeg binary (apt-get install ffmpeg).
"""

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from typing import Optional, Tuple


def next_frame(source, after_mono: float, timeout_s: float = 5.0):
    """The first frame `source` captured after `after_mono`, or None within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = source.read(timeout=0.1)
        if frame is not None and frame.mono > after_mono:
            return frame
    return None


def wait_until(predicate, timeout_s: float) -> bool:
    """True once predicate() holds, False if it did not within timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def is_listening(port: int, or_serving: bool = False) -> bool:
    """True when a TCP socket listens on the port (read from /proc, so no client connects:
    ffmpeg -listen 1 would take a probing connection as its one client). or_serving: an
    accepted connection on the port counts too (ffmpeg stops listening once a client is in)."""
    states = ("0A", "01") if or_serving else ("0A",)      # LISTEN, ESTABLISHED
    with open("/proc/net/tcp") as table:
        next(table)
        for line in table:
            fields = line.split()
            if int(fields[1].split(":")[1], 16) == port and fields[3] in states:
                return True
    return False


class FfmpegStream:
    """A live MJPEG-over-HTTP test-pattern stream served by ffmpeg on 127.0.0.1:port."""

    def __init__(self, size: Tuple[int, int] = (320, 240), fps: int = 15,
                 port: Optional[int] = None, log_path: Optional[str] = None,
                 input_path: Optional[str] = None) -> None:
        """input_path: an MJPEG video (scripts/sample_media.py make_sample_video) served in a
        loop at its own rate and size instead of the test pattern."""
        if shutil.which("ffmpeg") is None:
            raise RuntimeError("ffmpeg not found; install it: apt-get install -y ffmpeg")
        self.size = size
        self.fps = fps
        self.port = port or free_port()
        self.url = "http://127.0.0.1:%d/stream.mjpg" % self.port
        self.input_path = input_path
        self.spawns = 0                 # ffmpeg processes started, respawns included
        self._log_path = log_path
        self._lock = threading.Lock()
        self._serving = False
        self._proc = None               # type: Optional[subprocess.Popen]

    def command(self):
        width, height = self.size
        if self.input_path is not None:      # MJPEG already: copied, no encoding cost
            source = ["-stream_loop", "-1", "-i", self.input_path, "-c:v", "copy"]
        else:
            source = ["-f", "lavfi", "-i", "testsrc=size=%dx%d:rate=%d" % (width, height, self.fps),
                      "-c:v", "mjpeg", "-q:v", "5"]
        return (["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-re"] + source
                + ["-f", "mpjpeg", "-listen", "1", self.url])

    def start(self, timeout_s: float = 5.0) -> "FfmpegStream":
        """Serve (again); returns once ffmpeg listens."""
        with self._lock:
            self._serving = True
            proc = self._spawn()
        self._wait_listening(proc, timeout_s)
        return self

    def stop(self) -> None:
        """The camera dies: SIGKILL, the connection drops, nothing listens until start()."""
        with self._lock:
            self._serving = False
            proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def stall(self) -> None:
        """Frames stop while the connection stays open (the process is frozen)."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def __enter__(self) -> "FfmpegStream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _signal(self, signum: int) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise RuntimeError("ffmpeg is not running")
        os.kill(proc.pid, signum)

    def _spawn(self) -> subprocess.Popen:
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=log)
        if self._log_path:
            log.close()
        self._proc = proc
        self.spawns += 1
        threading.Thread(target=self._respawn_when_done, args=(proc,), daemon=True).start()
        return proc

    def _respawn_when_done(self, proc: subprocess.Popen) -> None:
        """ffmpeg exits when its client disconnects; serve the next client like a camera."""
        proc.wait()
        with self._lock:
            if self._serving and self._proc is proc:
                self._spawn()

    def _wait_listening(self, proc: subprocess.Popen, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not is_listening(self.port, or_serving=True):   # a waiting client may be quick
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ffmpeg did not start listening on %s (exit code %s): %s" % (
                    self.url, proc.poll(), " ".join(self.command())))
            time.sleep(0.02)


SYSTEM_PYTHON = os.environ.get("EDGEAGENT_TEST_GI_PYTHON", "/usr/bin/python3")
RTSP_SERVER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rtsp_server.py")


class RtspStream:
    """A real RTSP camera (tests/rtsp_server.py, GStreamer's RTSP server) on 127.0.0.1:port:
    stop() kills it like a power cut, start() brings it back on the same port."""

    def __init__(self, size: Tuple[int, int] = (320, 240), fps: int = 15,
                 port: Optional[int] = None, log_path: Optional[str] = None) -> None:
        self.size = size
        self.fps = fps
        self.port = port or free_port()
        self.url = "rtsp://127.0.0.1:%d/cam" % self.port
        self._log_path = log_path
        self._proc = None               # type: Optional[subprocess.Popen]

    def start(self, timeout_s: float = 15.0) -> "RtspStream":
        log = open(self._log_path, "ab") if self._log_path else subprocess.DEVNULL
        self._proc = subprocess.Popen(
            [SYSTEM_PYTHON, RTSP_SERVER, str(self.port), str(self.size[0]), str(self.size[1]),
             str(self.fps)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
        if self._log_path:
            log.close()
        deadline = time.monotonic() + timeout_s
        while not is_listening(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                code = self._proc.poll()
                self.stop()
                raise RuntimeError("RTSP server did not listen on %d (exit code %s); it needs "
                                   "apt: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 "
                                   "python3-gi gstreamer1.0-plugins-good" % (self.port, code))
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> "RtspStream":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
