"""Publisher + link + outbox against a real mosquitto: order, status/will, outages, crashes.

A subscriber may see a result twice after a reconnect (QoS 1); `dedupe` does what a real
subscriber does with `seq`. Slow by nature: test_broker_outage_* waits through a 20 s outage.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from agent import wire
from agent_proc import wait_until
from broker import Broker, Subscriber, dedupe
from mqtt_link_helpers import (DEVICE, RESULTS, ROOT, broker, result_payload,  # noqa: F401 (fixture)
                               start_publisher, states, status_payload)



# ---- (a) order, birth, stop, will -------------------------------------------------------
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_results_arrive_in_seq_order_and_status_goes_online_then_stopped(tmp_path, broker, protocol):
    # given a persistent subscriber and a connected publisher
    sub = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE)
    publisher = start_publisher(tmp_path, broker.port, protocol=protocol)
    # when 500 results are submitted and flushed
    seqs = [publisher.submit(RESULTS, result_payload, 1) for _ in range(500)]
    assert publisher.flush(10)
    # then each arrives once, in seq order, and the stats show nothing pending
    assert sub.wait_for(lambda msgs: len(sub.seqs()) >= 500)
    assert sub.seqs() == seqs == list(range(1, 501))
    stats = publisher.stats()
    assert (stats["pending"], stats["dropped"], stats["unstored"], stats["rejected"],
            stats["storage"]) == (0, 0, 0, 0, "ok")
    # and a newcomer sees the retained `online` status
    late = Subscriber(broker.port, "edgeagent/%s/status" % DEVICE, client_id="late", persistent=False)
    assert late.wait_for(lambda msgs: msgs and msgs[0].retain and msgs[0].json()["state"] == "online")
    # when the publisher stops cleanly
    publisher.stop(5)
    # then the status turns `stopped` (retained), and no `offline` will follows
    assert sub.wait_for(lambda msgs: states(sub)[-1:] == ["stopped"])
    time.sleep(0.5)
    assert states(sub) == ["online", "stopped"]
    late.close()
    sub.close()


CHILD = r"""
import json, logging, sys, time
sys.path.insert(0, sys.argv[1])
from agent.mqtt.link import MqttLink
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.mqtt.settings import MqttSettings
logging.basicConfig(level=logging.INFO, stream=sys.stderr)
args = json.loads(sys.argv[2])
settings = MqttSettings.from_dict({"host": "127.0.0.1", "port": args["port"], "keepalive_s": 5,
                                   "reconnect": {"initial_s": 0.1, "max_s": 0.5}}, "child.yaml")
status = lambda state: json.dumps({"state": state}).encode()
publisher = Publisher(MqttLink(settings, args["device"], status),
                      Outbox(args["outbox"], commit_interval_ms=50))
publisher.start()
topic = "edgeagent/%s/results" % args["device"]
make = lambda seq: json.dumps({"seq": seq}).encode()
for line in sys.stdin:                       # commands from the test, one a line
    word, _, arg = line.strip().partition(" ")
    if word == "submit":
        seqs = [publisher.submit(topic, make, 1) for _ in range(int(arg))]
        reply = {"seqs": seqs, "on_disk": publisher._outbox.flush(10)}
    elif word == "drain":
        reply = {"drained": publisher.flush(float(arg))}
    elif word == "stop":
        publisher.stop(5)
        reply = {"stopped": True}
    print(json.dumps(reply), flush=True)
"""


class ChildPublisher:
    """A publisher in its own process, so the test can SIGKILL it."""

    def __init__(self, port: int, outbox_path: str, device: str = DEVICE) -> None:
        args = json.dumps({"port": port, "outbox": outbox_path, "device": device})
        self.proc = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, universal_newlines=True)

    def ask(self, command: str) -> dict:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "child publisher died"
        return json.loads(line)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def close(self) -> None:
        """End of its commands: the child leaves its stdin loop and exits."""
        self.proc.stdin.close()
        self.proc.wait(10)
        self.proc.stdout.close()


def test_last_will_offline_is_published_when_the_publisher_is_killed(tmp_path, broker):
    # given a publisher process that is online
    sub = Subscriber(broker.port, "edgeagent/%s/status" % DEVICE)
    child = ChildPublisher(broker.port, str(tmp_path / "outbox.sqlite"))
    assert sub.wait_for(lambda msgs: states(sub) == ["online"])
    # when it is killed without a chance to say goodbye
    child.kill()
    # then the broker publishes its last will, retained
    assert sub.wait_for(lambda msgs: states(sub) == ["online", "offline"])
    late = Subscriber(broker.port, "edgeagent/%s/status" % DEVICE, client_id="late", persistent=False)
    assert late.wait_for(lambda msgs: [m.json()["state"] for m in msgs if m.retain] == ["offline"])
    late.close()
    sub.close()


# ---- (b) broker outage at a steady rate ---------------------------------------------------
def test_broker_outage_of_20_s_at_30_per_s_loses_nothing_and_keeps_order(tmp_path, broker):
    # given a publisher submitting 30 results a second to a persistent subscriber
    sub = Subscriber(broker.port, RESULTS)
    publisher = start_publisher(tmp_path, broker.port)
    stop_submitting = threading.Event()
    submitted = []

    def submit_steadily():
        next_at = time.monotonic()
        while not stop_submitting.is_set():
            submitted.append(publisher.submit(RESULTS, result_payload, 1))
            next_at += 1 / 30.0
            time.sleep(max(0.0, next_at - time.monotonic()))

    producer = threading.Thread(target=submit_steadily)
    producer.start()
    # when the broker is down for 20 s in the middle
    time.sleep(2)
    broker.stop()
    before_outage = len(submitted)
    time.sleep(20)
    during_outage = len(submitted) - before_outage
    outage_pending = publisher.stats()["pending"]
    broker.start()
    time.sleep(2)
    stop_submitting.set()
    producer.join()
    # then after the flush every seq reached the subscriber, in order once duplicates are dropped
    # the outage really piled up results (however fast a loaded machine let the producer run)
    assert during_outage >= 100 and outage_pending >= 0.9 * during_outage
    assert publisher.flush(20)
    n = len(submitted)
    assert sub.wait_for(lambda msgs: dedupe(sub.seqs())[-1:] == [n], timeout_s=20)
    assert dedupe(sub.seqs()) == list(range(1, n + 1))
    assert publisher.stats()["dropped"] == 0
    publisher.stop(5)
    sub.close()


# ---- (c) publisher killed while the broker is down ----------------------------------------
def test_publisher_killed_during_outage_delivers_its_outbox_after_restart(tmp_path, broker):
    # given a publisher process that delivered 50 results
    sub = Subscriber(broker.port, RESULTS)
    outbox_path = str(tmp_path / "outbox.sqlite")
    child = ChildPublisher(broker.port, outbox_path)
    assert child.ask("submit 50")["seqs"] == list(range(1, 51))
    assert child.ask("drain 10") == {"drained": True}
    # when the broker goes down, 70 more results reach the disk, and the process is killed
    broker.stop()
    reply = child.ask("submit 70")
    assert reply == {"seqs": list(range(51, 121)), "on_disk": True}
    child.kill()
    # and the broker and then the publisher come back, and it submits 10 more
    broker.start()
    child = ChildPublisher(broker.port, outbox_path)
    later = child.ask("submit 10")["seqs"]
    assert child.ask("drain 20") == {"drained": True}
    # then seq went on above every seq handed out before the kill (a gap after a crash, never
    # a reuse) and everything arrived, in order after dedupe
    assert later[0] > 120 and later == list(range(later[0], later[0] + 10))
    assert sub.wait_for(lambda msgs: dedupe(sub.seqs())[-1:] == later[-1:])
    assert dedupe(sub.seqs()) == list(range(1, 121)) + later
    assert child.ask("stop") == {"stopped": True}
    child.close()
    sub.close()


# ---- commands, health, reconnect details ---------------------------------------------------
def test_subscriptions_are_renewed_after_the_broker_restarts_without_persistence(tmp_path):
    # given a broker that forgets sessions (kill, no saved state), a subscribed publisher and a
    # commander that watches its status (a message the publisher sends after subscribing is
    # forwarded only once the broker has the subscription: one connection is processed in order)
    broker = Broker(tmp_path / "broker", conf_extra="autosave_interval 0").start()
    publisher = start_publisher(tmp_path, broker.port)
    got = []
    publisher.subscribe("edgeagent/%s/command" % DEVICE, lambda topic, payload: got.append(payload))
    commander = Subscriber(broker.port, "edgeagent/%s/status" % DEVICE, client_id="commander",
                           persistent=False)
    publisher.send_now("edgeagent/%s/status" % DEVICE, status_payload("subscribed"), qos=1)
    assert commander.wait_for(lambda msgs: "subscribed" in [m.json()["state"] for m in msgs], 30)
    commander.client.publish("edgeagent/%s/command" % DEVICE, b'{"id": 1}', qos=1)
    assert wait_until(lambda: got, 30)
    assert got == [b'{"id": 1}']
    # when the broker is killed, its state wiped, and started again
    broker.kill()
    for name in os.listdir(os.path.join(broker.dir, "persist")):
        os.remove(os.path.join(broker.dir, "persist", name))
    seen = len(commander.received())
    broker.start()
    # then the birth message `online` comes after the subscriptions are renewed, so a command
    # sent once `online` is seen arrives
    assert commander.wait_for(lambda msgs: wire.ONLINE in [m.json()["state"] for m in msgs[seen:]], 30)
    commander.client.publish("edgeagent/%s/command" % DEVICE, b'{"id": 2}', qos=1)
    assert wait_until(lambda: len(got) >= 2, 30)
    assert got == [b'{"id": 1}', b'{"id": 2}']
    publisher.stop(5)
    commander.close()
    broker.stop()
