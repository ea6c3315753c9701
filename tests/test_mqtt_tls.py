"""TLS, per-device ACL and secrets against a real mosquitto with throwaway certificates.

Needs openssl and mosquitto_passwd (apt: openssl, mosquitto). The broker uses the example
ACL shipped in docs/mosquitto/acl, so the docs and the test cannot drift apart.
"""

import json
import logging
import os
import shutil
import ssl
import subprocess
import time

import pytest

from agent.errors import ConfigError
from agent.mqtt.link import MqttLink
from agent.mqtt.outbox import Outbox
from agent.mqtt.publisher import Publisher
from agent.mqtt.settings import MqttSettings
from broker import PAHO2, Broker, Subscriber, add_password, free_port

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLE_ACL = os.path.join(ROOT, "docs", "mosquitto", "acl")
PASSWORDS = {"devA": "secret-a", "devB": "secret-b", "dashboard": "secret-dash"}


def openssl(*args: str, cwd: str) -> None:
    subprocess.check_call(["openssl"] + list(args), cwd=cwd, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)


def make_ca(folder: str, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "2", "-subj", "/CN=%s" % name, "-keyout", name + ".key", "-out", name + ".crt",
            cwd=folder)


def make_cert(folder: str, ca: str, name: str, alt_names: str = "") -> None:
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-subj", "/CN=%s" % name, "-keyout", name + ".key", "-out", name + ".csr", cwd=folder)
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w") as handle:
        handle.write("subjectAltName=%s\n" % alt_names if alt_names else "basicConstraints=CA:FALSE\n")
    openssl("x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-days", "2", "-out", name + ".crt", "-extfile", ext, cwd=folder)
    os.chmod(os.path.join(folder, name + ".key"), 0o600)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """CA, server cert for localhost/127.0.0.1, client certs, and an unrelated `wrong` CA."""
    folder = str(tmp_path_factory.mktemp("pki"))
    make_ca(folder, "ca")
    make_ca(folder, "wrong-ca")
    make_cert(folder, "ca", "server", "DNS:localhost,IP:127.0.0.1")
    for client in ("devA", "devB", "dashboard"):
        make_cert(folder, "ca", client)
    return folder


@pytest.fixture(scope="module")
def tls_broker(pki, tmp_path_factory):
    """Mutual TLS, password file, the example ACL; no anonymous access."""
    folder = str(tmp_path_factory.mktemp("tls-broker"))
    passwd = os.path.join(folder, "passwd")
    for user, password in PASSWORDS.items():
        add_password(passwd, user, password)
    acl = os.path.join(folder, "acl")
    shutil.copy(EXAMPLE_ACL, acl)
    port = free_port()
    listener = "\n".join([
        "listener %d 127.0.0.1" % port,
        "cafile %s/ca.crt" % pki, "certfile %s/server.crt" % pki, "keyfile %s/server.key" % pki,
        "require_certificate true",
        "allow_anonymous false", "password_file %s" % passwd, "acl_file %s" % acl])
    broker = Broker(folder, port=port, listener_conf=listener).start()
    yield broker
    broker.stop()


def secret_file(tmp_path, name: str, content: str, mode: int = 0o600) -> str:
    path = str(tmp_path / name)
    with open(path, "w") as handle:
        handle.write(content + "\n")
    os.chmod(path, mode)
    return path


def device_settings(tmp_path, pki, port: int, user: str, password: str, **extra) -> MqttSettings:
    config = {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "username": user,
              "password_file": secret_file(tmp_path, user + ".pw", password),
              "reconnect": {"initial_s": 0.1, "max_s": 0.5},
              "tls": {"ca_file": os.path.join(pki, "ca.crt"),
                      "cert_file": os.path.join(pki, user + ".crt"),
                      "key_file": os.path.join(pki, user + ".key")}}
    config.update(extra)
    return MqttSettings.from_dict(config, "test.yaml")


def dashboard(pki, port: int) -> Subscriber:
    ctx = ssl.create_default_context(cafile=os.path.join(pki, "ca.crt"))
    ctx.load_cert_chain(os.path.join(pki, "dashboard.crt"), os.path.join(pki, "dashboard.key"))
    return Subscriber(port, "edgeagent/#", client_id="dashboard", persistent=False,
                      tls_context=ctx, username="dashboard", password=PASSWORDS["dashboard"])


def status(state: str) -> bytes:
    return json.dumps({"state": state}).encode()


def start_device(tmp_path, settings: MqttSettings, device: str) -> Publisher:
    publisher = Publisher(MqttLink(settings, device, status),
                          Outbox(str(tmp_path / ("%s.sqlite" % device)), commit_interval_ms=20))
    publisher.start()
    return publisher


# ---- TLS -----------------------------------------------------------------------------------
def test_device_with_client_certificate_and_password_publishes_over_verified_tls(tmp_path, pki, tls_broker):
    # given a dashboard and device A with the right CA, its certificate and its password
    watcher = dashboard(pki, tls_broker.port)
    settings = device_settings(tmp_path, pki, tls_broker.port, "devA", PASSWORDS["devA"])
    publisher = start_device(tmp_path, settings, "devA")
    # when it publishes a result
    assert publisher._link.wait_connected(10), publisher._link.last_error
    publisher.submit("edgeagent/devA/results", lambda seq: json.dumps({"seq": seq}).encode())
    # then the dashboard receives it
    assert watcher.wait_for(lambda msgs: [m.topic for m in msgs if m.topic.endswith("results")]
                            == ["edgeagent/devA/results"])
    publisher.stop(5)
    watcher.close()


def test_wrong_ca_gives_one_clear_error_and_no_traceback(tmp_path, pki, tls_broker, caplog):
    # given device A trusting an unrelated CA
    settings = device_settings(tmp_path, pki, tls_broker.port, "devA", PASSWORDS["devA"],
                               tls={"ca_file": os.path.join(pki, "wrong-ca.crt"),
                                    "cert_file": os.path.join(pki, "devA.crt"),
                                    "key_file": os.path.join(pki, "devA.key")})
    # when it tries for two seconds
    with caplog.at_level(logging.DEBUG, logger="agent.mqtt"):
        publisher = start_device(tmp_path, settings, "devA")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(
                [r for r in caplog.records if "next attempt" in r.getMessage()]) < 2:
            time.sleep(0.1)
        connected = publisher._link.connected
        publisher.stop(1)
    # then it kept trying but never connected, and said why exactly once, without a traceback
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not connected
    assert len([r for r in caplog.records if "next attempt" in r.getMessage()]) >= 2
    assert len(errors) == 1 and errors[0].exc_info is None
    expected = "TLS handshake with broker 127.0.0.1:%d failed: certificate verify failed" % tls_broker.port
    assert errors[0].getMessage().startswith(expected)
    assert "check mqtt.tls.ca_file" in errors[0].getMessage()


def test_insecure_tls_connects_despite_wrong_ca_and_warns_loudly(tmp_path, pki, tls_broker, caplog):
    # given insecure: true with an unrelated CA
    settings = device_settings(tmp_path, pki, tls_broker.port, "devA", PASSWORDS["devA"],
                               tls={"ca_file": os.path.join(pki, "wrong-ca.crt"), "insecure": True,
                                    "cert_file": os.path.join(pki, "devA.crt"),
                                    "key_file": os.path.join(pki, "devA.key")})
    # when the device starts
    with caplog.at_level(logging.WARNING, logger="agent.mqtt"):
        publisher = start_device(tmp_path, settings, "devA")
        connected = publisher._link.wait_connected(10)
        publisher.stop(2)
    # then it connects, and the log says verification is off
    assert connected
    assert any("NOT verified" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


# ---- ACL and credentials ---------------------------------------------------------------------
@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_device_cannot_publish_under_another_devices_topic(tmp_path, pki, tls_broker, protocol):
    # given a dashboard and device A, connected with its own credentials
    watcher = dashboard(pki, tls_broker.port)
    settings = device_settings(tmp_path, pki, tls_broker.port, "devA", PASSWORDS["devA"],
                               protocol=protocol)
    publisher = start_device(tmp_path, settings, "devA")
    assert publisher._link.wait_connected(10)
    # when it publishes under device B's topic, then under its own
    publisher.submit("edgeagent/devB/results", b'{"seq": 1}')
    publisher.submit("edgeagent/devA/results", b'{"seq": 2}')
    assert publisher.flush(10)
    # then only its own arrives (messages are ordered, so the first would have come first)
    assert watcher.wait_for(lambda msgs: any(m.topic == "edgeagent/devA/results" for m in msgs))
    assert [m.topic for m in watcher.received() if "results" in m.topic] == ["edgeagent/devA/results"]
    if protocol == "5" and PAHO2:   # MQTT 5 says so in the PUBACK (paho 1.6 does not pass it on)
        assert publisher.rejected == 1
    publisher.stop(5)
    watcher.close()


def test_bad_password_stops_retrying_and_reports_it(tmp_path, pki, tls_broker, caplog):
    # given device A with a wrong password
    settings = device_settings(tmp_path, pki, tls_broker.port, "devA", "not-the-password")
    # when it starts and gets refused
    with caplog.at_level(logging.INFO, logger="agent.mqtt"):
        publisher = start_device(tmp_path, settings, "devA")
        deadline = time.monotonic() + 30
        while publisher._link.failure is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)      # a second refusal (the bug this guards against) would come now
    link = publisher._link
    # then it tried once, stopped, and `failure` names the user and the password file
    refusals = [r for r in caplog.records if "refused user" in r.getMessage()]
    assert len(refusals) == 1
    assert link.failure is not None and "'devA'" in link.failure
    assert settings.password_source in link.failure and "not-the-password" not in link.failure
    assert not link._thread.is_alive()
    publisher.stop(1)


# ---- secrets in settings ------------------------------------------------------------------
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_password_file_readable_by_others_is_refused_with_the_fix(tmp_path, mode):
    path = secret_file(tmp_path, "pw", "hunter2", mode)
    with pytest.raises(ConfigError) as error:
        MqttSettings.from_dict({"username": "devA", "password_file": path}, "cfg.yaml")
    message = str(error.value)
    assert "mqtt.password_file" in message and path in message and "chmod 600 %s" % path in message
    assert "hunter2" not in message


def test_private_key_readable_by_others_is_refused(tmp_path, pki):
    key = str(tmp_path / "client.key")
    shutil.copy(os.path.join(pki, "devA.key"), key)
    os.chmod(key, 0o644)
    with pytest.raises(ConfigError, match="mqtt.tls.key_file.*chmod 600"):
        MqttSettings.from_dict({"tls": {"cert_file": os.path.join(pki, "devA.crt"),
                                        "key_file": key}}, "cfg.yaml")


def test_password_comes_from_systemd_credentials_directory_and_stays_out_of_repr(tmp_path, monkeypatch):
    secret_file(tmp_path, "mqtt-password", "s3cret", 0o400)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    settings = MqttSettings.from_dict({"username": "devA", "credential": "mqtt-password"}, "cfg.yaml")
    assert settings.password == "s3cret"
    assert "s3cret" not in repr(settings)


def test_credential_without_systemd_says_how_to_provide_it(monkeypatch):
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError, match="LoadCredential=mqtt-password"):
        MqttSettings.from_dict({"username": "devA", "credential": "mqtt-password"}, "cfg.yaml")


@pytest.mark.parametrize("config, fragment", [
    ({"qos": 3}, "mqtt.qos = 3: must be one of 0, 1, 2"),
    ({"protocol": "4"}, "mqtt.protocol"),
    ({"port": 0}, "mqtt.port = 0"),
    ({"prefix": "a/#"}, "mqtt.prefix"),
    ({"tls": {"ca": "x"}}, "mqtt.tls.ca: unknown key"),
    ({"tls": {"ca_file": "/nonexistent/ca.crt"}}, "no such file"),
    ({"reconnect": {"initial_s": 5, "max_s": 1}}, "mqtt.reconnect.max_s"),
    ({"password_file": "/nonexistent"}, "mqtt.password_file"),
])
def test_bad_mqtt_values_are_config_errors_naming_the_key(config, fragment):
    with pytest.raises(ConfigError) as error:
        MqttSettings.from_dict(config, "cfg.yaml")
    assert fragment in str(error.value)
    assert str(error.value).startswith("config error: cfg.yaml")
