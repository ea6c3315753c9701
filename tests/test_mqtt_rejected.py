"""Results the broker's ACL denies, against a real Mosquitto with a password file and an ACL
that lets the device write its status and health but not its results.

MQTT 5: the PUBACK carries reason 0x87 (not authorized); every one is counted in health
(outbox.rejected, outbox.last_reject_reason) and logged loudly, once a minute at most.
MQTT 3.1.1 has no reason codes: Mosquitto PUBACKs a denied QoS 1 publish like any other and
drops it. The test pins that down honestly: the publisher cannot tell (rejected stays 0, the
outbox empties), the results never arrive, health still does; docs/outbox.md says how to notice.
"""

import logging

import pytest

from agent.mqtt.link import MqttLink
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.mqtt.settings import MqttSettings
from broker import PAHO2, Broker, Subscriber, add_password

DEVICE = "aclcam"
PASSWORD = "cam-secret"
RESULTS = "edgeagent/%s/results" % DEVICE


@pytest.fixture
def acl_broker(tmp_path):
    folder = tmp_path / "broker"
    folder.mkdir()
    passwd = str(folder / "passwd")
    add_password(passwd, DEVICE, PASSWORD)
    add_password(passwd, "dashboard", "dash-secret")
    acl = folder / "acl"
    acl.write_text("user %s\ntopic write edgeagent/%s/status\ntopic write edgeagent/%s/health\n"
                   "user dashboard\ntopic read edgeagent/#\n" % (DEVICE, DEVICE, DEVICE))
    port_conf = "allow_anonymous false\npassword_file %s\nacl_file %s" % (passwd, acl)
    broker = Broker(folder, conf_extra="log_type debug")   # where Mosquitto says "Denied PUBLISH"
    broker.listener_conf = "listener %d 127.0.0.1\n%s" % (broker.port, port_conf)
    with broker:
        yield broker


def start_publisher(tmp_path, port, protocol):
    (tmp_path / "password").write_text(PASSWORD + "\n")
    (tmp_path / "password").chmod(0o600)
    settings = MqttSettings.from_dict({
        "host": "127.0.0.1", "port": port, "protocol": protocol, "username": DEVICE,
        "password_file": str(tmp_path / "password"), "reconnect": {"initial_s": 0.1, "max_s": 1.0}}, "test.yaml")
    outbox = Outbox(str(tmp_path / "outbox.sqlite"), commit_interval_ms=50)
    publisher = Publisher(MqttLink(settings, DEVICE, lambda state: b'{"state": "%s"}' % state.encode()),
                          outbox)
    publisher.start()
    assert publisher._link.wait_connected(10), publisher._link.last_error
    return publisher


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_acl_denied_results_are_counted_where_the_protocol_can_tell(tmp_path, acl_broker,
                                                                      protocol, caplog):
    if protocol == "5" and not PAHO2:
        pytest.skip("paho-mqtt 1.x does not pass MQTT 5 PUBACK reason codes to on_publish")
    watcher = Subscriber(acl_broker.port, "edgeagent/#", client_id="dash",
                         username="dashboard", password="dash-secret")
    publisher = start_publisher(tmp_path, acl_broker.port, protocol)
    try:
        # when 20 results are published into the denied topic, then a health message
        with caplog.at_level(logging.INFO, logger="agent.mqtt"):
            seqs = [publisher.submit(RESULTS, b'{"seq": %d}' % n) for n in range(1, 21)]
            assert publisher.flush(10)
        publisher.send_now("edgeagent/%s/health" % DEVICE, b'{"state": "running"}', qos=1)
        # then health arrives but no result does, and the outbox is empty (each was PUBACKed)
        assert watcher.wait_for(lambda msgs: watcher.received("/health"), timeout_s=10)
        assert watcher.received("/results") == []
        stats = publisher.stats()
        assert len(seqs) == 20 and stats["pending"] == 0
        if protocol == "5":
            # MQTT 5: every refusal counted, with the reason, and one loud log line
            assert stats["rejected"] == 20
            assert stats["last_reject_reason"] == "not authorized (0x87)"
            loud = [r for r in caplog.records if "REJECTED" in r.getMessage()]
            assert len(loud) == 1 and loud[0].levelno == logging.ERROR
        else:
            # MQTT 3.1.1: the broker acknowledged what it dropped; nothing here can count it
            assert stats["rejected"] == 0 and stats["last_reject_reason"] is None
        # either way the broker's own log (log_type debug) names each denied publish
        assert acl_broker.log().count("Denied PUBLISH from %s" % publisher._link.client_id) >= 20
    finally:
        publisher.stop(5)
        watcher.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_result_the_broker_disconnects_on_is_counted_and_does_not_block_the_rest(
        tmp_path, protocol):
    # given a broker that closes the connection of a client sending a packet over 1000 bytes
    broker = Broker(tmp_path / "broker", conf_extra="max_packet_size 1000")
    broker.start()
    watcher = Subscriber(broker.port, RESULTS, client_id="dash-size")
    settings = MqttSettings.from_dict({"host": "127.0.0.1", "port": broker.port,
                                       "protocol": protocol,
                                       "reconnect": {"initial_s": 0.05, "max_s": 0.2}}, "t.yaml")
    publisher = Publisher(MqttLink(settings, DEVICE, lambda state: b"{}"),
                          Outbox(str(tmp_path / "outbox.sqlite"), commit_interval_ms=50))
    publisher.start()
    try:
        assert publisher._link.wait_connected(10)
        # when one result is too large for it, between small ones
        small = [publisher.submit(RESULTS, b'{"seq": %d}' % n) for n in range(5)]
        big = publisher.submit(RESULTS, b"x" * 3000)
        later = [publisher.submit(RESULTS, b'{"seq": %d}' % n) for n in range(5, 10)]
        # then every small one arrives, the big one is counted as rejected and deleted
        assert watcher.wait_for(lambda msgs: len({m.payload for m in msgs}) >= 10, timeout_s=60)
        assert b"x" * 3000 not in [m.payload for m in watcher.received()]
        assert publisher.flush(30)
        stats = publisher.stats()
        assert stats["rejected"] == 1 and "closed the connection" in stats["last_reject_reason"]
        assert stats["pending"] == 0 and len(small + later) == 10 and big not in small + later
    finally:
        publisher.stop(5)
        watcher.close()
        broker.stop()
