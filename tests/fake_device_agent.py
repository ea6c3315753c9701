"""A stand-in for `edgeagent run` started by tests/systemctl_shim.py, named so: it speaks the
agent's systemd protocol (READY=1 on $NOTIFY_SOCKET once "working"). What it does comes from the
content of the current release's model files under the device root given as argv[1]:

* ``crash-before-ready:S``: exit 1 after S seconds, never ready (a corrupt model failing slowly);
* ``crash-after-ready:S``: READY=1, then exit 1 after S seconds;
* ``never-ready``: run without ever sending READY=1;
* anything else: READY=1 at once, then run until stopped.

With ``mqtt-status`` in a model and ``mqtt: {host, port}`` in the config it also publishes the
agent's retained status ``online`` and health messages with an increasing ``seq`` (paho), like the
agent; ``mqtt-silent`` publishes the status but no advancing seq."""

import glob
import json
import os
import socket
import sys
import time


def notify(text):
    address = os.environ.get("NOTIFY_SOCKET")
    if address:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(text.encode(), address)


def behaviour(root):
    words = []
    for path in sorted(glob.glob(os.path.join(root, "opt/edgeagent/current/models/*"))):
        with open(path) as f:
            words += f.read().split()
    return words


def mqtt_publisher(root, silent):
    import yaml
    import paho.mqtt.client as paho
    with open(os.path.join(root, "etc/edgeagent/config.yaml")) as f:
        config = yaml.safe_load(f) or {}
    mqtt, device = config.get("mqtt", {}), config.get("device", {}).get("id", "dev")
    prefix = mqtt.get("prefix", "edgeagent")
    client = paho.Client(paho.CallbackAPIVersion.VERSION2) if hasattr(paho, "CallbackAPIVersion") \
        else paho.Client()
    client.connect(mqtt.get("host", "127.0.0.1"), int(mqtt.get("port", 1883)))
    client.loop_start()
    client.publish("%s/%s/status" % (prefix, device),
                   json.dumps({"state": "online", "device_id": device}), qos=1, retain=True)
    seq = [int(time.time() * 10)]

    def tick():
        if not silent:
            seq[0] += 1
        client.publish("%s/%s/health" % (prefix, device), json.dumps({"seq": seq[0]}), qos=1)
    return tick


def main():
    root = sys.argv[1]
    words = behaviour(root)
    for word in words:
        kind, _, seconds = word.partition(":")
        if kind == "crash-before-ready":
            time.sleep(float(seconds or 0))
            sys.exit(1)
    tick = None
    if "mqtt-status" in words or "mqtt-silent" in words:
        tick = mqtt_publisher(root, "mqtt-silent" in words)
    if "never-ready" not in words:
        notify("READY=1\nSTATUS=fake agent working")
    started = time.monotonic()
    while True:
        for word in words:
            kind, _, seconds = word.partition(":")
            if kind == "crash-after-ready" and time.monotonic() - started >= float(seconds or 0):
                sys.exit(1)
        if tick:
            tick()
        time.sleep(0.2)


if __name__ == "__main__":
    main()
