"""The `mqtt:` and `outbox:` config sections as frozen values, validated on load.

Secrets: the broker password comes from a file (mqtt.password_file) or a systemd credential
(mqtt.credential, read from $CREDENTIALS_DIRECTORY/<name>), never from the command line or the
YAML itself. A secret file readable by group or others is refused. The password is kept out of
repr() so it never reaches a log line.
"""

import os
import stat
from dataclasses import dataclass, field  # novm: the dataclasses backport serves 3.6
from typing import Any, Mapping, Optional

from ..checks import (need_bool, need_choice, need_int, need_mapping, need_number, need_str,
                      reject_unknown, where)
from ..checks import reader
from ..errors import ConfigError
from .. import wire

MQTT_KEYS = ("enabled", "host", "port", "prefix", "client_id", "qos", "protocol", "keepalive_s",
             "tls", "username", "password_file", "credential", "reconnect")
TLS_KEYS = ("ca_file", "cert_file", "key_file", "insecure")
RECONNECT_KEYS = ("initial_s", "max_s")
OUTBOX_KEYS = ("path", "max_messages", "max_bytes", "commit_interval_ms")
PROTOCOLS = ("3.1.1", "5")


@dataclass(frozen=True)
class TlsSettings:
    ca_file: Optional[str] = None     # None: the system's trusted CAs
    cert_file: Optional[str] = None   # client certificate (mutual TLS), with key_file
    key_file: Optional[str] = None
    insecure: bool = False            # skip certificate and host name checks (logged loudly)


@dataclass(frozen=True)
class ReconnectSettings:
    initial_s: float = 0.5
    max_s: float = 60.0


@dataclass(frozen=True)
class MqttSettings:
    enabled: bool = True
    host: str = "localhost"
    port: int = 1883
    prefix: str = wire.DEFAULT_PREFIX
    client_id: Optional[str] = None   # None: edgeagent-<device_id>
    qos: int = 1                      # QoS of results
    protocol: str = "3.1.1"
    keepalive_s: int = 30
    tls: Optional[TlsSettings] = None
    username: Optional[str] = None
    password: Optional[str] = field(default=None, repr=False)
    password_source: Optional[str] = None   # the file the password came from, for messages
    reconnect: ReconnectSettings = ReconnectSettings()

    def client_id_for(self, device_id: str) -> str:
        return self.client_id or "edgeagent-%s" % device_id

    def topic(self, device_id: str, leaf: str) -> str:
        """`<prefix>/<device>/<leaf>`, e.g. topic("nano-01", "results")."""
        return wire.topic(self.prefix, device_id, leaf)

    @classmethod
    def from_dict(cls, d: Optional[Mapping], path: str) -> "MqttSettings":
        d = need_mapping({} if d is None else d, path, "mqtt")
        reject_unknown(d, MQTT_KEYS, path, "mqtt.")
        get = reader(d, cls)   # absent keys: the field defaults
        password, source = _password(d, path)
        username = _opt_str(d, "username", path)
        if password is not None and username is None:
            raise ConfigError("%s: a password is set but mqtt.username is not; MQTT sends a password "
                              "only with a user name: set mqtt.username" % path)
        port = need_int(get("port"), path, "mqtt.port", 1, 65535)
        return cls(
            enabled=need_bool(get("enabled"), path, "mqtt.enabled"),
            host=need_str(get("host"), path, "mqtt.host"),
            port=port,
            prefix=_prefix(get("prefix"), path),
            client_id=_opt_str(d, "client_id", path),
            qos=need_choice(get("qos"), (0, 1, 2), path, "mqtt.qos"),
            protocol=need_choice(str(get("protocol")), PROTOCOLS, path, "mqtt.protocol"),
            keepalive_s=need_int(get("keepalive_s"), path, "mqtt.keepalive_s", 5, 3600),
            tls=_tls(d.get("tls"), path),
            username=username, password=password, password_source=source,
            reconnect=_reconnect(d.get("reconnect"), path))


@dataclass(frozen=True)
class OutboxSettings:
    path: Optional[str] = None        # None: <state_dir>/outbox.sqlite
    max_messages: int = 100000
    max_bytes: int = 100 * 1024 * 1024
    commit_interval_ms: int = 200     # at most this much of results is lost on a power cut

    def path_in(self, state_dir: str) -> str:
        return self.path or os.path.join(state_dir, "outbox.sqlite")

    @classmethod
    def from_dict(cls, d: Optional[Mapping], path: str) -> "OutboxSettings":
        d = need_mapping({} if d is None else d, path, "outbox")
        reject_unknown(d, OUTBOX_KEYS, path, "outbox.")
        get = reader(d, cls)   # absent keys: the field defaults
        return cls(
            path=_opt_str(d, "path", path, "outbox."),
            max_messages=need_int(get("max_messages"), path, "outbox.max_messages", 1),
            max_bytes=need_int(get("max_bytes"), path, "outbox.max_bytes", 1024),
            commit_interval_ms=need_int(get("commit_interval_ms"), path,
                                        "outbox.commit_interval_ms", 1, 60000))


def _opt_str(d: Mapping, key: str, path: str, prefix: str = "mqtt.") -> Optional[str]:
    value = d.get(key)
    return None if value is None else need_str(value, path, prefix + key)


def _prefix(value: Any, path: str) -> str:
    value = need_str(value, path, "mqtt.prefix")
    if any(c in value for c in "#+") or value.startswith("/") or value.endswith("/"):
        raise ConfigError("%s = %r: must not contain # or + nor start or end with /" % (
            where(path, "mqtt.prefix"), value))
    return value


def _reconnect(value: Any, path: str) -> ReconnectSettings:
    d = need_mapping({} if value is None else value, path, "mqtt.reconnect")
    reject_unknown(d, RECONNECT_KEYS, path, "mqtt.reconnect.")
    get = reader(d, ReconnectSettings)   # absent keys: the field defaults
    initial = need_number(get("initial_s"), path, "mqtt.reconnect.initial_s", 0.01, 3600)
    most = need_number(get("max_s"), path, "mqtt.reconnect.max_s", initial, 3600)
    return ReconnectSettings(initial, most)


def _tls(value: Any, path: str) -> Optional[TlsSettings]:
    if value is None:
        return None
    d = need_mapping(value, path, "mqtt.tls")
    reject_unknown(d, TLS_KEYS, path, "mqtt.tls.")
    get = reader(d, TlsSettings)   # absent keys: the field defaults
    files = {key: _opt_str(d, key, path, "mqtt.tls.") for key in ("ca_file", "cert_file", "key_file")}
    for key, file_path in files.items():
        if file_path is not None and not os.path.isfile(file_path):
            raise ConfigError("%s = %r: no such file" % (where(path, "mqtt.tls." + key), file_path))
    if (files["cert_file"] is None) != (files["key_file"] is None):
        raise ConfigError("%s: mqtt.tls.cert_file and mqtt.tls.key_file go together: set both "
                          "for client certificates, or neither" % path)
    if files["key_file"] is not None:
        _refuse_shared_secret(files["key_file"], path, "mqtt.tls.key_file")
    return TlsSettings(insecure=need_bool(get("insecure"), path, "mqtt.tls.insecure"),
                       **files)


def _password(d: Mapping, path: str):
    """(password, file it came from) or (None, None); the content never appears in errors."""
    if d.get("password_file") is not None and d.get("credential") is not None:
        raise ConfigError("%s: mqtt.password_file and mqtt.credential both set: keep one" % path)
    if d.get("password_file") is not None:
        key, secret_path = "mqtt.password_file", need_str(d["password_file"], path, "mqtt.password_file")
    elif d.get("credential") is not None:
        key = "mqtt.credential"
        name = need_str(d["credential"], path, key)
        cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
        if not cred_dir:
            raise ConfigError("%s = %r: $CREDENTIALS_DIRECTORY is not set; run under systemd with "
                              "LoadCredential=%s:/path/to/secret, or use mqtt.password_file" % (
                                  where(path, key), name, name))
        secret_path = os.path.join(cred_dir, name)
    else:
        return None, None
    return _read_secret(secret_path, path, key), secret_path


def _read_secret(secret_path: str, path: str, key: str) -> str:
    try:
        _refuse_shared_secret(secret_path, path, key)
        with open(secret_path, "r") as handle:
            secret = handle.readline().rstrip("\r\n")
    except (IOError, OSError) as why:
        raise ConfigError("%s: cannot read %s: %s" % (where(path, key), secret_path, why.strerror))
    if not secret:
        raise ConfigError("%s: %s is empty; put the password on its first line" % (
            where(path, key), secret_path))
    return secret


def _refuse_shared_secret(secret_path: str, path: str, key: str) -> None:
    try:
        mode = stat.S_IMODE(os.stat(secret_path).st_mode)
    except (IOError, OSError) as why:
        raise ConfigError("%s: cannot read %s: %s" % (where(path, key), secret_path, why.strerror))
    if mode & 0o077:
        raise ConfigError("%s: %s is readable by group or others (mode %04o); a secret must be "
                          "private: chmod 600 %s" % (where(path, key), secret_path, mode, secret_path))
