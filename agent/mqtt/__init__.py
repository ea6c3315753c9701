"""MQTT output: a durable outbox, a self-healing broker link and the publisher between them.

    settings = MqttSettings.from_dict(config.get("mqtt"), path)
    outbox = Outbox(OutboxSettings.from_dict(config.get("outbox"), path).path_in(state_dir), ...)
    link = MqttLink(settings, device_id, status_payload)     # status_payload(state) -> bytes
    publisher = Publisher(link, outbox); publisher.start()
    publisher.submit(settings.topic(device_id, "results"), make_payload, settings.qos)

See docs/mqtt.md for the guarantees.

The package imports nothing eagerly: the config reader imports agent.mqtt.settings on
machines without paho-mqtt, so the link, outbox and publisher are imported from their modules
(agent.mqtt.link, agent.mqtt.outbox, agent.mqtt.publisher) where used.
"""

