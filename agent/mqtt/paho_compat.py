"""A thin layer over paho-mqtt 1.6 and 2.x: one way to build a client and one set of callbacks.

paho 2.x needs a CallbackAPIVersion and passes (flags, reason_code, properties) to every callback;
1.6 has no CallbackAPIVersion and its callback arguments depend on the protocol. The handler
gets plain ints: CONNACK codes are MQTT 5 reason codes in both (3.1.1 return codes are mapped).
"""

import logging
from typing import Any, Optional

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

log = logging.getLogger(__name__)

PAHO2 = hasattr(paho, "CallbackAPIVersion")
# MQTT 3.1.1 CONNACK return codes as the MQTT 5 reason codes paho 2.x reports for them.
_V311_CONNACK = {0: 0, 1: 132, 2: 133, 3: 136, 4: 134, 5: 135}
BAD_CREDENTIALS = 134
NOT_AUTHORIZED = 135
SESSION_EXPIRY_S = 7 * 24 * 3600   # MQTT 5: the broker keeps our session (and queue) this long

topic_matches_sub = paho.topic_matches_sub


def code_of(reason: Any) -> int:
    """An int from a paho ReasonCode(s) object or a plain int."""
    return int(getattr(reason, "value", reason) or 0)


def new_client(client_id: str, mqtt5: bool) -> "paho.Client":
    """A client with a persistent session and no paho auto-reconnect.

    No in-flight limit in paho (0): the Publisher keeps its own window, and with a limit paho
    scans all its in-flight messages on every PUBACK (O(window) per message)."""
    kwargs = {"client_id": client_id, "reconnect_on_failure": False,
              "protocol": paho.MQTTv5 if mqtt5 else paho.MQTTv311}
    if not mqtt5:
        kwargs["clean_session"] = False
    if PAHO2:
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, **kwargs)
    else:
        client = paho.Client(**kwargs)
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    return client


def connect_kwargs(mqtt5: bool) -> dict:
    if not mqtt5:
        return {}
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = SESSION_EXPIRY_S
    return {"clean_start": False, "properties": props}


def receive_maximum(properties: Any) -> Optional[int]:
    """The broker's MQTT 5 Receive Maximum (how many QoS>0 publishes it takes in flight)."""
    value = getattr(properties, "ReceiveMaximum", None) if properties is not None else None
    return int(value) if value else None


def bind(client: "paho.Client", handler: Any, mqtt5: bool) -> None:
    """Route paho callbacks to handler.handle_connack(client, code, properties),
    .disconnected(client, code), .published(client, mid, code), .message(client, topic, payload)."""
    if PAHO2:
        client.on_connect = lambda c, _u, _f, rc, props: handler.handle_connack(c, code_of(rc), props)
        client.on_disconnect = lambda c, _u, _f, rc, _p: handler.handle_disconnect(c, code_of(rc))
        client.on_publish = lambda c, _u, mid, rc, _p: handler.handle_puback(c, mid, code_of(rc))
    elif mqtt5:
        client.on_connect = lambda c, _u, _f, rc, props=None: handler.handle_connack(c, code_of(rc), props)
        client.on_disconnect = lambda c, _u, rc, _p=None: handler.handle_disconnect(c, code_of(rc))
        client.on_publish = lambda c, _u, mid: handler.handle_puback(c, mid, 0)
    else:
        client.on_connect = lambda c, _u, _f, rc: handler.handle_connack(
            c, _V311_CONNACK.get(code_of(rc), 128), None)
        client.on_disconnect = lambda c, _u, rc: handler.handle_disconnect(c, code_of(rc))
        client.on_publish = lambda c, _u, mid: handler.handle_puback(c, mid, 0)
    client.on_message = lambda c, _u, msg: handler.handle_message(c, msg.topic, msg.payload)
