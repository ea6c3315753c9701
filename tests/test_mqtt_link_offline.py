"""The MQTT link offline and unreachable (send_now, capped retries, backoff) and its config keys."""

import time

import pytest

from agent.errors import ConfigError
from agent.mqtt.link import MqttLink, reconnect_backoff
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.mqtt.settings import MqttSettings
from broker import Subscriber
from mqtt_link_helpers import DEVICE, broker, settings_for, start_publisher, status_payload  # noqa: F401


def test_send_now_is_dropped_while_offline_and_delivered_while_online(tmp_path, broker):
    # given a connected publisher and a health subscriber
    sub = Subscriber(broker.port, "edgeagent/%s/health" % DEVICE)
    publisher = start_publisher(tmp_path, broker.port)
    # when health goes out online, then offline
    assert publisher.send_now("edgeagent/%s/health" % DEVICE, b'{"n": 1}', qos=0)
    assert sub.wait_for(lambda msgs: len(msgs) == 1)
    broker.stop()
    deadline = time.monotonic() + 5
    while publisher._link.connected and time.monotonic() < deadline:
        time.sleep(0.05)
    # then the offline one is refused at once instead of piling up
    assert publisher.send_now("edgeagent/%s/health" % DEVICE, b'{"n": 2}', qos=1) is False
    broker.start()
    publisher.stop(5)
    sub.close()


def test_unreachable_broker_retries_with_capped_backoff_and_one_warning(tmp_path, caplog):
    # given a port where nothing listens
    from broker import free_port
    outbox = Outbox(str(tmp_path / "outbox.sqlite"))
    link = MqttLink(settings_for(free_port()), DEVICE, status_payload)
    publisher = Publisher(link, outbox)
    # when the publisher runs for a second
    with caplog.at_level("DEBUG", logger="agent.mqtt.link"):
        publisher.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(
                [r for r in caplog.records if "cannot reach broker" in r.getMessage()]) < 3:
            time.sleep(0.1)
        publisher.stop(1)
    # then it tried several times, warned once, and never gave up
    attempts = [r for r in caplog.records if "cannot reach broker" in r.getMessage()]
    assert len(attempts) >= 3
    assert [r.levelname for r in attempts].count("WARNING") == 1
    assert link.failure is None


@pytest.mark.parametrize("initial, most, expected_ceilings", [
    (0.5, 60.0, [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0]),
    (1.0, 3.0, [1.0, 2.0, 3.0, 3.0]),
])
def test_backoff_doubles_with_jitter_up_to_the_cap(initial, most, expected_ceilings):
    # given a backoff
    backoff = reconnect_backoff(initial, most)
    # when delays are drawn
    delays = [backoff.next_delay() for _ in expected_ceilings]
    # then each lies in [ceiling/2, ceiling] and the ceiling doubles up to the cap
    for delay, ceiling in zip(delays, expected_ceilings):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next_delay() <= initial


def test_unknown_mqtt_key_is_a_config_error_naming_file_key_and_allowed():
    with pytest.raises(ConfigError) as error:
        MqttSettings.from_dict({"hots": "x"}, "/etc/edgeagent/config.yaml")
    assert "/etc/edgeagent/config.yaml: mqtt.hots: unknown key" in str(error.value)
    assert "host" in str(error.value)
