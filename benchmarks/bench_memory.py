"""Agent memory against a runtime-only process, and memory across reloads.

    .venv/bin/python benchmarks/bench_memory.py [--frames 300] [--reloads 24]

runtime-only: a Python process that imports numpy and ONNX Runtime, loads the face-detect
              model with the agent profile's options (threads 0) and runs it on --frames
              tensors: what the model alone costs.
runtime+capture: the same, but its tensors come from the sample clip through cv2.VideoCapture
              and cv2.resize: what a hand-written loop over the same camera costs (OpenCV alone
              is ~16 MB of it).
agent:        `python -m agent run` on the same model (face-detect, ONNX Runtime) over the sample
              clip, publishing through its outbox to a local Mosquitto, for --frames frames.
reloads:      the agent on the looped clip, sent SIGHUP --reloads times (each waits for results
              of the new pipeline); VmRSS after each.
Prints VmHWM (peak RSS) of both, agent - runtime-only (target <= +40 MB), and VmRSS after the
first and the last reload (target: flat, within a few MB). Two runs of each, alternating.
"""

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "scripts")]

from broker import Broker  # noqa: E402

TARGET_EXTRA_MB = 40.0
RUNTIME_ONLY = r"""
import sys, numpy as np, onnxruntime
options = onnxruntime.SessionOptions(); options.intra_op_num_threads = int(sys.argv[3])
options.log_severity_level = 3
session = onnxruntime.InferenceSession(sys.argv[1], sess_options=options,
                                       providers=["CPUExecutionProvider"])
inp = session.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in inp.shape]
tensor = np.random.rand(*shape).astype(np.float32)
for _ in range(int(sys.argv[2])):
    session.run(None, {inp.name: tensor})
for line in open("/proc/self/status"):
    if line.startswith("VmHWM:"):
        print(int(line.split()[1]))
"""

# The same loop fed from the clip: a hand-written "camera + model" program without the agent.
RUNTIME_CAPTURE = RUNTIME_ONLY.replace(
    "tensor = np.random.rand(*shape).astype(np.float32)\nfor _ in range(int(sys.argv[2])):",
    "import cv2\ncapture = cv2.VideoCapture(sys.argv[4])\n"
    "for _ in range(int(sys.argv[2])):\n"
    "    ok, image = capture.read()\n"
    "    if not ok:\n"
    "        capture = cv2.VideoCapture(sys.argv[4]); ok, image = capture.read()\n"
    "    tensor = (cv2.resize(image, (shape[2], shape[1]))[None].astype(np.float32) - 127.5) / 127.5")


def status_kb(pid: int, key: str) -> int:
    try:
        with open("/proc/%d/status" % pid) as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def env():
    environment = dict(os.environ)
    environment["PYTHONPATH"] = ROOT + os.pathsep + environment.get("PYTHONPATH", "")
    return environment


def runtime_only_mb(frames: int, video: str = "") -> float:
    """Peak RSS of the model alone (video "") or fed from `video` through OpenCV."""
    model = os.path.join(ROOT, "models", "face_detection_short_range.onnx")
    # the same runtime options as the agent's generic profile: every core (threads 0)
    program = RUNTIME_CAPTURE if video else RUNTIME_ONLY
    out = subprocess.check_output([sys.executable, "-c", program, model, str(frames), "0",
                                   video], env=env())
    return int(out.split()[-1]) / 1024.0


def write_config(folder: str, port: int, loop: bool) -> str:
    path = os.path.join(folder, "config-%s.yaml" % loop)
    with open(path, "w") as handle:
        handle.write("device: {id: bench-mem}\npipeline: face-detect\nbackend: onnxruntime\n"
                     "state_dir: %s\nmqtt: {host: 127.0.0.1, port: %d}\ncamera: {loop: %s}\n"
                     "log: {level: warning}\n" % (os.path.join(folder, "state"), port,
                                                  "true" if loop else "false"))
    return path


def agent_mb(config: str, video: str, frames: int) -> float:
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", config,
                             "--source", "file://" + video, "--max-frames", str(frames)],
                            env=env(), cwd=ROOT, stdout=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, status_kb(proc.pid, "VmHWM"))
        time.sleep(0.02)
    if proc.returncode != 0:
        raise SystemExit("agent exited with %d" % proc.returncode)
    return peak / 1024.0


def reload_rss(config: str, video: str, reloads: int):
    proc = subprocess.Popen([sys.executable, "-m", "agent", "run", "--config", config,
                             "--source", "file://" + video, "--print"],
                            env=env(), cwd=ROOT, stdout=subprocess.PIPE)
    rss = []
    try:
        _wait_results(proc, 20)
        for _ in range(reloads):
            proc.send_signal(signal.SIGHUP)
            _wait_results(proc, 20)        # the new pipeline is running
            rss.append(status_kb(proc.pid, "VmRSS") / 1024.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return rss


def _wait_results(proc, count: int) -> None:
    for _ in range(count):
        if not proc.stdout.readline():
            raise SystemExit("agent ended early")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--reloads", type=int, default=24)
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        from sample_media import make_sample_video
        video = make_sample_video(os.path.join(tmp, "astronaut.avi"))
        broker = Broker(os.path.join(tmp, "broker")).start()
        try:
            pairs, captured = [], []
            for run in range(1, args.runs + 1):      # alternating
                runtime = runtime_only_mb(args.frames)
                with_capture = runtime_only_mb(args.frames, video)
                agent = agent_mb(write_config(tmp, broker.port, False), video, args.frames)
                pairs.append((runtime, agent))
                captured.append((with_capture, agent))
                print("run %d: runtime-only VmHWM %.1f MB, runtime+capture %.1f MB, agent VmHWM "
                      "%.1f MB: +%.1f / +%.1f MB" % (run, runtime, with_capture, agent,
                                                    agent - runtime, agent - with_capture))
            rss = reload_rss(write_config(tmp, broker.port, True), video, args.reloads)
        finally:
            broker.stop()
    extra = sorted(a - r for r, a in pairs)[len(pairs) // 2]
    print("agent over runtime-only: +%.1f MB (median of %d; target <= +%.0f MB: %s)" % (
        extra, len(pairs), TARGET_EXTRA_MB, "met" if extra <= TARGET_EXTRA_MB else "MISSED"))
    over_capture = sorted(a - r for r, a in captured)[len(captured) // 2]
    print("agent over runtime+capture (the same clip through OpenCV): +%.1f MB (median of %d)"
          % (over_capture, len(captured)))
    if rss:
        print("VmRSS after reload 1: %.1f MB, after reload %d: %.1f MB (%+.1f MB); all: %s" % (
            rss[0], len(rss), rss[-1], rss[-1] - rss[0], " ".join("%.0f" % x for x in rss)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
