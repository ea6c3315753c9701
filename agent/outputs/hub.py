"""Where results, status and health go: the MQTT publisher with its durable outbox, or (MQTT off)
nowhere but --print. The service talks to this one object only; the status message's pipeline
and backend come from `now` (the service's Current), asked at each send."""

import logging
import time
from typing import Dict, Optional

from ..config.agent_config import AgentConfig
from ..errors import OutputError
from .. import wire
from ..wire import status_payload
from .reporter import LocalSequence, Payload

log = logging.getLogger(__name__)


class Outputs:
    def __init__(self, config: AgentConfig, now) -> None:
        self.config = config
        self.publisher = None           # the MQTT Publisher once started; None: MQTT off
        self._now = now                 # status_fields() -> (pipeline, backend)
        self._local = LocalSequence()
        settings = config.mqtt
        self.results_topic = settings.topic(config.device_id, "results")
        self.health_topic = settings.topic(config.device_id, "health")

    def start(self) -> "Outputs":
        """Open the outbox and connect (MQTT on); with MQTT off there is nothing to start."""
        config = self.config
        if not config.mqtt.enabled:
            log.info("mqtt disabled: results go to --print only")
            return self
        from ..mqtt.link import MqttLink   # paho is imported only when used
        from ..mqtt.outbox import Outbox
        from ..mqtt.publisher import Publisher
        outbox_path = config.outbox.path_in(config.state_dir)
        try:
            outbox = Outbox(outbox_path, config.outbox.max_messages, config.outbox.max_bytes,
                            config.outbox.commit_interval_ms)
        except OutputError:
            raise
        except Exception as why:
            raise OutputError("outbox %s: cannot open (%s); check outbox.path / state_dir" % (
                outbox_path, why))
        link = MqttLink(config.mqtt, config.device_id, self._status)
        self.publisher = Publisher(link, outbox)
        self.publisher.start()
        log.info("mqtt: publishing to %s:%d as %s (outbox %s)", config.mqtt.host,
                 config.mqtt.port, config.device_id, outbox_path)
        return self

    def _status(self, state: str) -> bytes:
        pipeline, backend = self._now.status_fields()
        return status_payload(state, self.config.device_id, pipeline, backend, time.time())

    def announce(self, state: str = wire.ONLINE) -> None:
        """Re-send the retained status once the backend is known (the birth message at connect
        time may predate it)."""
        if self.publisher is not None:
            topic = self.config.mqtt.topic(self.config.device_id, "status")
            self.publisher.send_now(topic, self._status(state), qos=1, retain=True)

    def result_sink(self, make_payload: Payload) -> int:
        if self.publisher is None:
            return self._local(make_payload)
        return self.publisher.submit(self.results_topic, make_payload, self.config.mqtt.qos)

    def send_health(self, payload: bytes) -> None:
        if self.publisher is not None:
            self.publisher.send_now(self.health_topic, payload, qos=0)

    def stats(self) -> Dict[str, object]:
        if self.publisher is None:
            return {"pending": 0, "dropped": 0, "bytes": 0, "unstored": 0, "storage": "ok",
                    "storage_error": None, "rejected": 0, "last_reject_reason": None,
                    "recovered": None}
        return self.publisher.stats()

    @property
    def unstored(self) -> int:
        """Results that could not be stored (full disk): a non-zero exit at stop."""
        return int(self.stats()["unstored"])

    def stop(self, drain_timeout_s: float) -> None:
        if self.publisher is not None:
            self.publisher.stop(drain_timeout_s)

    def enable_commands(self, latest_frame, request_reload) -> Optional[str]:
        """Listen on <prefix>/<device>/command (config commands.enabled); replies and snapshots
        go out directly, never through the results outbox."""
        if self.publisher is None:
            log.warning("commands.enabled is set but mqtt is off: no commands can arrive")
            return None
        from .remote_actions import build_command_handler
        settings, device = self.config.mqtt, self.config.device_id
        reply_topic = settings.topic(device, "command/reply")
        snapshot_topic = settings.topic(device, "snapshot")
        handler = build_command_handler(
            latest_frame, lambda jpeg: self.publisher.send_now(snapshot_topic, jpeg, qos=0),
            request_reload, lambda data: self.publisher.send_now(reply_topic, data, qos=1),
            getattr(self.config, "commands_pipeline_dir", None))
        topic = self.subscribe("command", handler.on_message)
        log.info("remote commands enabled on %s", topic)
        return topic

    def subscribe(self, leaf: str, callback) -> Optional[str]:
        if self.publisher is None:
            return None
        topic = self.config.mqtt.topic(self.config.device_id, leaf)
        self.publisher.subscribe(topic, callback)
        return topic
