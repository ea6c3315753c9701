"""Capture-to-subscriber latency through a real Mosquitto, as a dashboard feels it.

    .venv/bin/python benchmarks/bench_latency.py [--fps 30] [--frames 240] [--rounds 2]

The face-detect pipeline (BlazeFace, ONNX Runtime) runs on the sample clip, paced like a camera
at --fps (each frame stamped when it is "captured"). Its results go, per round, either
- durable: ResultReporter -> Publisher.submit -> Outbox (journal, SQLite WAL) -> the broker, or
- raw:     ResultReporter -> one paho client's publish(qos=1), nothing stored,
and a subscriber on the same machine notes when each arrives. Rounds alternate (durable, raw,
durable, raw...), so drift on a busy machine hits both alike. Prints per mode the p50/p95 of
capture -> subscriber and of result-built -> subscriber (the outbox's own share), the target
(capture -> subscriber p50 <= 10 ms at 30 fps, idle broker) and the pipeline's stage times.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), os.path.join(ROOT, "scripts")]

from agent import backends  # noqa: E402
from agent.inference import Inference  # noqa: E402
from agent.mqtt.link import MqttLink  # noqa: E402
from agent.mqtt.outbox import Outbox  # noqa: E402
from agent.mqtt.publisher import Publisher  # noqa: E402
from agent.mqtt.settings import MqttSettings  # noqa: E402
from agent.pipeline import PipelineRunner  # noqa: E402
from agent.config.pipeline_spec import load_pipeline  # noqa: E402
from agent.outputs.reporter import ResultReporter  # noqa: E402
from agent.sources import open_recovering  # noqa: E402
from agent.stats import PipelineStats  # noqa: E402
from agent.types import Frame  # noqa: E402
from broker import Broker, paho_client  # noqa: E402

TOPIC = "edgeagent/bench/results"
TARGET_P50_MS = 10.0


class PacedSource:
    """The real file source, read at `fps` like a camera; each frame stamped at its capture."""

    live = False

    def __init__(self, source, fps: float) -> None:
        self._source, self._period = source, 1.0 / fps
        self.uri = source.uri
        self._next = time.monotonic()
        self.captured = {}

    def read(self, timeout=None):
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next = max(self._next + self._period, time.monotonic() - self._period)
        frame = self._source.read()
        if frame is None:
            return None
        frame = Frame(frame.image, frame.index, time.time(), time.monotonic())
        self.captured[frame.index] = frame.mono
        return frame

    def close(self) -> None:
        self._source.close()


class Listener:
    """Notes the monotonic arrival time of each result, keyed by frame index."""

    def __init__(self, port: int) -> None:
        import json
        self.arrived = {}
        self._json = json
        self._ready = threading.Event()
        self.client = paho_client("bench-latency-sub", clean_session=True)
        self.client.on_connect = lambda client, *a: client.subscribe(TOPIC, 1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not self._ready.wait(10):
            raise SystemExit("subscriber could not subscribe")

    def _on_message(self, client, userdata, message) -> None:
        now = time.monotonic()
        payload = self._json.loads(message.payload.decode("utf-8"))
        self.arrived[(payload["boot_id"], payload["frame"]["index"], payload["seq"])] = now

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def durable_sink(port: int, workdir: str, built: dict):
    settings = MqttSettings.from_dict({"host": "127.0.0.1", "port": port}, "bench")
    outbox = Outbox(os.path.join(workdir, "outbox-%d.sqlite" % time.monotonic_ns()))
    publisher = Publisher(MqttLink(settings, "bench", lambda state: b"{}"), outbox)
    publisher.start()
    if not publisher._link.wait_connected(10):
        raise SystemExit("durable: no connection: %s" % publisher._link.last_error)

    def sink(make_payload):
        seq = publisher.submit(TOPIC, make_payload, 1)
        built[seq] = time.monotonic()
        return seq
    return sink, lambda: publisher.stop(5)


def raw_sink(port: int, workdir: str, built: dict):
    client = paho_client("bench-latency-raw", clean_session=True)
    client.connect("127.0.0.1", port)
    client.loop_start()
    counter = [0]

    def sink(make_payload):
        counter[0] += 1
        client.publish(TOPIC, make_payload(counter[0]), qos=1)
        built[counter[0]] = time.monotonic()
        return counter[0]

    def stop():
        client.disconnect()
        client.loop_stop()
    return sink, stop


def one_round(mode, inference, spec, video, args, port, workdir):
    listener = Listener(port)
    built = {}
    sink, stop = (durable_sink if mode == "durable" else raw_sink)(port, workdir, built)
    source = PacedSource(open_recovering("file://" + video, loop=True), args.fps)
    reporter = ResultReporter("bench", spec.name, spec.model_name, inference.backend.name, sink)
    seq_of = {}

    def emit(result):
        seq = reporter(result)
        if seq is not None:
            seq_of[seq] = result.frame_index

    runner = PipelineRunner(source, inference, emit, PipelineStats(), max_frames=args.frames)
    runner.start()
    runner.wait()
    deadline = time.monotonic() + 10
    while len(listener.arrived) < len(seq_of) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop()
    listener.close()
    source.close()
    capture, outbox = [], []
    for (_, index, seq), at in listener.arrived.items():
        if index < args.warmup or seq not in built:
            continue
        capture.append((at - source.captured[index]) * 1e3)
        outbox.append((at - built[seq]) * 1e3)
    return np.array(capture), np.array(outbox), len(seq_of), len(listener.arrived)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=30.0)
    parser.add_argument("--frames", type=int, default=240, help="frames per round")
    parser.add_argument("--warmup", type=int, default=30, help="first frames not measured")
    parser.add_argument("--rounds", type=int, default=2, help="durable/raw pairs")
    args = parser.parse_args(argv)
    spec = load_pipeline("face-detect")
    backend = backends.load("onnxruntime", spec.model_for("onnxruntime"), {"threads": 1},
                            spec.path)
    inference = Inference.from_parts(spec.preprocess, backend, spec.decoder, spec.path,
                                     spec.labels, spec.input_size)
    results = {"durable": [], "raw": []}
    with tempfile.TemporaryDirectory() as tmp:
        from sample_media import make_sample_video
        video = make_sample_video(os.path.join(tmp, "astronaut.avi"))
        broker = Broker(os.path.join(tmp, "broker")).start()
        try:
            for round_no in range(1, args.rounds + 1):
                for mode in ("durable", "raw"):
                    capture, outbox, made, got = one_round(mode, inference, spec, video, args,
                                                           broker.port, tmp)
                    results[mode].append((capture, outbox))
                    print("round %d %-7s: %d results, %d arrived; capture->subscriber p50 %.1f "
                          "p95 %.1f ms; result->subscriber p50 %.1f p95 %.1f ms" % (
                              round_no, mode, made, got, np.percentile(capture, 50),
                              np.percentile(capture, 95), np.percentile(outbox, 50),
                              np.percentile(outbox, 95)))
        finally:
            broker.stop()
    print()
    for mode in ("durable", "raw"):
        capture = np.concatenate([c for c, _ in results[mode]])
        outbox = np.concatenate([o for _, o in results[mode]])
        line = "%-7s capture->subscriber p50 %.1f ms, p95 %.1f ms; result->subscriber p50 %.1f " \
               "ms, p95 %.1f ms (%d results, %d rounds)" % (
                   mode, np.percentile(capture, 50), np.percentile(capture, 95),
                   np.percentile(outbox, 50), np.percentile(outbox, 95), len(capture), args.rounds)
        if mode == "durable":
            met = np.percentile(capture, 50) <= TARGET_P50_MS
            line += "  (target p50 <= %.0f ms at %.0f fps: %s)" % (TARGET_P50_MS, args.fps,
                                                                   "met" if met else "MISSED")
        print(line)
    d = statistics.median(np.percentile(c, 50) for c, _ in results["durable"])
    r = statistics.median(np.percentile(c, 50) for c, _ in results["raw"])
    print("durable - raw capture->subscriber p50: %+.1f ms (what the outbox adds)" % (d - r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
