"""MQTT output: a durable outbox, a self-healing broker link and the publisher between them.

    settings = MqttSettings.from_dict(config.get("mqtt"), path)
    outbox = Outbox(OutboxSettings.from_dict(config.get("outbox"), path).path_in(state_dir), ...)
    link = MqttLink(settings, device_id, status_payload)     # status_payload(state) -> bytes
    publisher = Publisher(link, outbox); publisher.start()
    publisher.submit(settings.topic(device_id, "results"), make_payload, settings.qos)

See docs/mqtt.md for the guarantees.
"""

from .link import MqttLink
from .outbox import Outbox, OutboxMessage
from .publisher import Publisher
from .settings import MqttSettings, OutboxSettings, ReconnectSettings, TlsSettings

__all__ = ["MqttLink", "MqttSettings", "Outbox", "OutboxMessage", "OutboxSettings", "Publisher",
           "ReconnectSettings", "TlsSettings"]
