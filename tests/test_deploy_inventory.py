"""Deploy parts without any host: host specs, inventory files, batches, config rendering, the
failure budget (with a recording deploy function) and the MQTT health watch (real mosquitto)."""

import json
import threading

import pytest

from agent.fleet.deploy.artifacts import render_config
from agent.fleet.deploy.host_deploy import HostResult
from agent.fleet.deploy.inventory import Host, load_inventory, parse_host_spec
from agent.fleet.deploy.rollout import batches, format_table, parse_serial, run_rollout
from agent.errors import ConfigError


@pytest.mark.parametrize("spec, user, address, port", [
    ("nano-01", None, "nano-01", 22),
    ("deploy@10.0.0.5:2222", "deploy", "10.0.0.5", 2222),
    ("pi@[fe80::1]:22", "pi", "fe80::1", 22),
])
def test_host_specs_parse(spec, user, address, port):
    host = parse_host_spec(spec, {})
    assert (host.user, host.address, host.port) == (user, address, port)


@pytest.mark.parametrize("spec", ["-oProxyCommand=sh", "a b", "u@h:99999", "u@h:x"])
def test_bad_host_specs_are_config_errors(spec):
    with pytest.raises(ConfigError, match="host|port"):
        parse_host_spec(spec, {})


def write_inventory(tmp_path, data):
    path = tmp_path / "inv.yaml"
    path.write_text(json.dumps(data))
    return str(path)


def test_inventory_layers_defaults_groups_and_hosts(tmp_path):
    (tmp_path / "m.onnx").write_text("m")
    path = write_inventory(tmp_path, {
        "defaults": {"user": "deploy", "mqtt": {"host": "broker", "port": 1883}},
        "groups": {"nanos": {"profile": "jetson-nano", "models": ["m.onnx"],
                             "mqtt": {"port": 8883}}},
        "hosts": {"nano-01": {"address": "10.0.0.21", "groups": ["nanos"], "device_id": "n1"},
                  "pi-01": {"user": "pi"}}})
    nano, pi = load_inventory(path, {"remote_root": "/srv/{name}"})
    assert (nano.user, nano.profile, nano.device_id) == ("deploy", "jetson-nano", "n1")
    assert nano.mqtt == {"host": "broker", "port": 8883}
    assert nano.models == (str(tmp_path / "m.onnx"),)
    assert (pi.address, pi.user, pi.remote_root) == ("pi-01", "pi", "/srv/pi-01")


@pytest.mark.parametrize("data, message", [
    ({"hosts": {"a": {"adress": "x"}}}, "hosts.a.adress: unknown key"),
    ({"defaults": {"forks": 3}, "hosts": {"a": {}}}, "defaults.forks: unknown key"),
    ({"hosts": {"a": {"groups": ["nope"]}}}, "unknown group 'nope'"),
    ({"hosts": {"a": {"models": ["missing.onnx"]}}}, "hosts.a.models = 'missing.onnx': no such"),
    ({"hosts": {"a": {"port": 0}}}, "hosts.a.port = 0: must be between 1 and 65535"),
    ({"hosts": {"a": {"remote_root": "rel/path"}}}, "must be an absolute path"),
    ({"inventory": {}}, "inventory: unknown key"),
])
def test_inventory_mistakes_name_file_and_key(tmp_path, data, message):
    path = write_inventory(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_inventory(path, {})
    assert path in str(err.value) and message in str(err.value)


def test_limit_selects_hosts_and_groups(tmp_path):
    path = write_inventory(tmp_path, {"groups": {"g": {}}, "hosts": {
        "a": {"groups": ["g"]}, "b": {}, "c": {}}})
    assert [h.name for h in load_inventory(path, {}, ["g", "c"])] == ["a", "c"]
    with pytest.raises(ConfigError, match="--limit zz"):
        load_inventory(path, {}, ["zz"])


@pytest.mark.parametrize("count, serial, sizes", [
    (10, "1,5,100%", [1, 5, 4]),
    (10, None, [10]),
    (10, "3", [3, 3, 3, 1]),
    (10, "1,50%", [1, 5, 4]),
    (3, "10%", [1, 1, 1]),
])
def test_serial_batches(count, serial, sizes):
    hosts = [Host("h%d" % i, "h%d" % i) for i in range(count)]
    assert [len(b) for b in batches(hosts, parse_serial(serial))] == sizes


@pytest.mark.parametrize("serial", ["0", "x", "150%", "1,,2"])
def test_bad_serial_is_a_config_error(serial):
    with pytest.raises(ConfigError, match="--serial"):
        parse_serial(serial)


def test_failure_budget_stops_starting_hosts():
    # given a recording deploy where two of six hosts fail, run one at a time
    hosts = [Host("h%d" % i, "h%d" % i) for i in range(6)]
    started = []
    lock = threading.Lock()

    def deploy_one(host):
        with lock:
            started.append(host.name)
        result = "failed" if host.name in ("h1", "h2") else "ok"
        return HostResult(host.name, None, "r", result, 0.1)

    # when one failure is allowed
    results = run_rollout(hosts, deploy_one, forks=1, serial=["100%"], max_fail=1)
    # then the rollout stops after the second failure
    assert started == ["h0", "h1", "h2"]
    assert [r.result for r in results] == ["ok", "failed", "failed", "skipped", "skipped",
                                           "skipped"]
    assert "skipped" in format_table(results)


def test_config_rendering_puts_overrides_over_the_base_config(tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text("mqtt: {host: old, qos: 1}\nlog_level: info\n")
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text("name: p\n")
    host = Host("n", "n", device_id="nano-01", profile="jetson-nano", pipeline=str(pipeline),
                mqtt={"host": "broker"}, settings={"models_dir": "{current}/models"},
                config=str(base))
    config = render_config(host, "/")
    assert config == {"mqtt": {"host": "broker", "qos": 1}, "log_level": "info",
                      "device": {"id": "nano-01", "profile": "jetson-nano"},
                      "pipeline": "/opt/edgeagent/current/pipelines/p.yaml",
                      "models_dir": "/opt/edgeagent/current/models"}


def test_mqtt_health_needs_online_status_and_an_advancing_seq_after_the_restart(tmp_path):
    import time
    from broker import Broker, paho_client
    from agent.fleet.deploy.health import MqttStatusWatch
    with Broker(str(tmp_path)) as broker:
        # given a retained `online` status (the agent's own, retained) and a watch on the device
        pub = paho_client("test-publisher", clean_session=True)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()
        base = "edgeagent/nano-01"
        pub.publish(base + "/status", json.dumps({"state": "online"}), qos=1,
                    retain=True).wait_for_publish()
        watch = MqttStatusWatch(("127.0.0.1", broker.port), "edgeagent", "nano-01")
        try:
            restarted_at = time.monotonic()
            deadline = time.monotonic() + 5
            while "not online" in (watch.why_not(restarted_at) or "") and \
                    time.monotonic() < deadline:
                time.sleep(0.05)
            # then online alone is not enough: nothing numbered arrived yet
            assert "no advancing seq" in watch.why_not(restarted_at)
            # and a seq that does not move is not enough either
            for _ in range(2):
                pub.publish(base + "/health", json.dumps({"seq": 7}), qos=1).wait_for_publish()
            time.sleep(0.3)
            assert "no advancing seq" in watch.why_not(restarted_at)
            # when the seq advances
            pub.publish(base + "/health", json.dumps({"seq": 8}), qos=1).wait_for_publish()
            while watch.why_not(restarted_at) and time.monotonic() < deadline:
                time.sleep(0.05)
            # then the agent counts as doing its job; offline status undoes that
            assert watch.why_not(restarted_at) is None
            pub.publish(base + "/status", json.dumps({"state": "offline"}), qos=1,
                        retain=True).wait_for_publish()
            while watch.why_not(restarted_at) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "not online" in watch.why_not(restarted_at)
        finally:
            watch.close()
            pub.loop_stop()
