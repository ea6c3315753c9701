"""docs/mosquitto/bridge.conf as shipped, between two real Mosquitto brokers (site -> central):
QoS 1 results sent while the central broker is down all arrive after it restarts, retained
status goes up, commands come down."""

import json
import os
import time

from broker import Broker, Subscriber, paho_client
from conftest import ROOT

BRIDGE_CONF = os.path.join(ROOT, "docs", "mosquitto", "bridge.conf")


def bridge_conf(central_port):
    """The shipped file, pointed at the test's central broker (its only change)."""
    with open(BRIDGE_CONF) as handle:
        lines = handle.read().splitlines()
    addresses = [i for i, line in enumerate(lines) if line.startswith("address ")]
    assert len(addresses) == 1
    lines[addresses[0]] = "address 127.0.0.1:%d" % central_port
    return "\n".join(lines) + "\n"


class Device:
    """What an agent does on the site broker: QoS 1 publishes, each waited for (PUBACK)."""

    def __init__(self, port):
        self.client = paho_client("site-device", clean_session=True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def publish(self, topic, payload, retain=False):
        info = self.client.publish(topic, json.dumps(payload), qos=1, retain=retain)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def result(seq):
    return {"schema": "edgeagent/result/1", "device_id": "cam-1", "boot_id": "c" * 32, "seq": seq}


def seqs(subscriber):
    return {m.json()["seq"] for m in subscriber.received("/results")}


def test_results_sent_while_the_central_broker_is_down_all_arrive_after_its_restart(tmp_path):
    # given a central broker with a persistent subscriber, and a site broker bridged to it with
    # the shipped config (on top of the site's persistence and max_queued_messages settings)
    central = Broker(tmp_path / "central").start()
    site = Broker(tmp_path / "site", conf_extra=bridge_conf(central.port))
    subscriber = Subscriber(central.port, "edgeagent/#", client_id="central-ingest")
    device = None
    try:
        site.start()
        device = Device(site.port)
        device.publish("edgeagent/cam-1/status", {"state": "online"}, retain=True)
        device.publish("edgeagent/cam-1/results", result(1))
        assert subscriber.wait_for(lambda m: 1 in seqs(subscriber), timeout_s=30), site.log()
        # when the central broker is down while the device sends 500 results to the site broker
        central.stop()
        for seq in range(2, 502):
            device.publish("edgeagent/cam-1/results", result(seq))
        # and the central broker comes back
        central.start()
        # then every one of them arrives, in order of seq, none lost
        assert subscriber.wait_for(lambda m: len(seqs(subscriber)) >= 501, timeout_s=90), (
            len(seqs(subscriber)), site.log()[-2000:])
        assert seqs(subscriber) == set(range(1, 502))
        got = [m.json()["seq"] for m in subscriber.received("/results")]
        assert sorted(set(got)) == sorted(set(got), key=got.index)
        # and the retained status is on the central broker for a late subscriber
        late = Subscriber(central.port, "edgeagent/+/status", client_id="late", persistent=False)
        try:
            assert late.wait_for(lambda m: len(m) >= 1)
            (status,) = late.received("/status")
            assert status.retain and status.json() == {"state": "online"}
        finally:
            late.close()
        # and a command sent on the central broker reaches the device's site broker
        on_site = Subscriber(site.port, "edgeagent/cam-1/command", client_id="site-agent",
                             persistent=False)
        try:
            sender = paho_client("dashboard", clean_session=True)
            sender.connect("127.0.0.1", central.port)
            sender.loop_start()
            assert on_site.wait_for(lambda m: _send_until(sender, m), timeout_s=20)
            assert on_site.received()[0].json() == {"id": "1", "name": "ping"}
            sender.disconnect()
            sender.loop_stop()
        finally:
            on_site.close()
    finally:
        if device is not None:
            device.close()
        subscriber.close()
        site.stop()
        central.stop()


def _send_until(sender, received):
    """Publish the command until the site has it (the bridge's `in` subscription on the
    central broker is made asynchronously after the bridge connects)."""
    if received:
        return True
    sender.publish("edgeagent/cam-1/command", json.dumps({"id": "1", "name": "ping"}), qos=1)
    time.sleep(0.2)
    return False
