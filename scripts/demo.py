#!/usr/bin/env python3
"""`make demo`: the face-detect pipeline on a sample video made from a real photo, results
published to a local MQTT broker and read back by a real subscriber.

Broker: the one on localhost:1883 when it answers; else a private mosquitto on a free port when
mosquitto is installed; else no MQTT at all (results printed instead, and it says so)."""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, HERE)
DEVICE_ID = "demo-device"


def port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def private_broker(workdir: str):
    binary = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists(
        "/usr/sbin/mosquitto") else None)
    if binary is None:
        return None, None
    port = free_port()
    conf = os.path.join(workdir, "mosquitto.conf")
    with open(conf, "w") as f:
        f.write("listener %d 127.0.0.1\nallow_anonymous true\npersistence true\n"
                "persistence_location %s/\nmax_queued_messages 100000\n" % (port, workdir))
    proc = subprocess.Popen([binary, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    for _ in range(50):
        if port_answers("127.0.0.1", port):
            return proc, port
        time.sleep(0.1)
    proc.kill()
    return None, None


class Subscriber:
    """A real MQTT subscriber on the device's topics, recording what arrives."""

    def __init__(self, port: int) -> None:
        import paho.mqtt.client as mqtt
        kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2} if hasattr(
            mqtt, "CallbackAPIVersion") else {}
        self.messages = []
        self._ready = threading.Event()
        self.client = mqtt.Client(client_id="edgeagent-demo-viewer", **kwargs)
        self.client.on_connect = lambda c, *a: (c.subscribe("edgeagent/%s/#" % DEVICE_ID, 1),
                                                self._ready.set())
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self._ready.wait(5)
        time.sleep(0.3)

    def stop(self) -> None:
        time.sleep(0.5)
        self.client.loop_stop()
        self.client.disconnect()


def main() -> int:
    from sample_media import make_sample_video
    workdir = os.path.join(REPO, "var", "demo")
    os.makedirs(workdir, exist_ok=True)
    video = os.path.join(workdir, "astronaut.avi")
    if not os.path.exists(video):
        make_sample_video(video, frames=60, fps=15)
    print("sample video: %s (60 frames of scikit-image's astronaut photo)" % video)

    broker, port = None, 1883
    if port_answers("127.0.0.1", 1883):
        print("broker: the local one on 127.0.0.1:1883")
    else:
        broker, port = private_broker(tempfile.mkdtemp(prefix="edgeagent-demo-"))
        print("broker: " + ("a private mosquitto on 127.0.0.1:%d" % port if broker else
                            "none answers on localhost and mosquitto is not installed; "
                            "results are printed instead (apt install mosquitto)"))
    config = os.path.join(workdir, "config.yaml")
    with open(config, "w") as f:
        f.write("device: {id: %s}\npipeline: face-detect\nstate_dir: %s\nmqtt:\n"
                "  enabled: %s\n  host: 127.0.0.1\n  port: %d\n" % (
                    DEVICE_ID, os.path.join(workdir, "state"), "true" if port else "false",
                    port or 1883))
    subscriber = Subscriber(port) if port else None
    argv = [sys.executable, "-m", "agent", "run", "--config", config,
            "--source", "file://" + video]
    if subscriber is None:
        argv.append("--print")
    print("running: %s" % " ".join(argv[1:]))
    code = subprocess.call(argv, cwd=REPO)
    if subscriber is not None:
        subscriber.stop()
        report(subscriber.messages)
    if broker is not None:
        broker.terminate()
        broker.wait(5)
    return code if code else (0 if subscriber is None or subscriber.messages else 1)


def report(messages) -> None:
    results = [json.loads(p) for t, p in messages if t.endswith("/results")]
    states = [json.loads(p)["state"] for t, p in messages if t.endswith("/status")]
    print("\nthe subscriber received %d results and status %s" % (len(results), " -> ".join(states)))
    if results:
        print("first result:\n" + json.dumps(results[0], indent=2))
        seqs = [r["seq"] for r in results]
        faces = sum(len(r["detections"]) for r in results)
        print("seq %d..%d, %d faces in %d frames" % (seqs[0], seqs[-1], faces, len(results)))


if __name__ == "__main__":
    sys.exit(main())
