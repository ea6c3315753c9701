"""Validates MQTT discovery messages with Home Assistant's own code (run by the Python of a venv
with `homeassistant` installed: see .ci/ha-venv). Reads a JSON list of {"prefix", "topic",
"payload"} on stdin and prints one JSON report: {"ha_version", "messages": [{"topic",
"components": {id: platform}, "errors": [...]}]}.

The steps are HA's own, in HA's order: the topic matcher, the device discovery schema, the
origin schema, the shared-option merge into each component, then each platform's
DISCOVERY_SCHEMA. Those schemas drop unknown keys silently (vol.REMOVE_EXTRA); here a dropped
key is an error, as is any warning HA logs while validating (a unit that does not fit its
device class, say). A template that does not compile is an error too.

Keys newer than the HA release under test are listed in NEWER_KEYS with the release that
added them: HA ignores them, and they are reported under "ignored" instead of "errors"."""

import asyncio
import copy
import importlib
import json
import logging
import sys
import tempfile

NEWER_KEYS = {"default_entity_id": "2025.10"}   # replaces object_id (removed in 2026.4)


class _Warnings(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(record.getMessage())


def _dropped(given, validated, path=""):
    """Keys of `given` that the schema removed (recursing into the device block)."""
    missing = []
    for key, value in given.items():
        if key not in validated:
            missing.append(path + key)
        elif isinstance(value, dict) and isinstance(validated[key], dict):
            missing += _dropped(value, validated[key], path + key + ".")
    return missing


def _check_templates(config, errors, where):
    from homeassistant.helpers.template import Template
    for key, value in config.items():
        if isinstance(value, Template):
            try:
                value.ensure_valid()
            except Exception as why:  # a TemplateError names the problem
                errors.append("%s.%s: template does not compile: %s" % (where, key, why))


def validate(message, hass):
    from homeassistant.components.mqtt import discovery
    from homeassistant.components.mqtt.schemas import (DEVICE_DISCOVERY_SCHEMA,
                                                       MQTT_ORIGIN_INFO_SCHEMA)
    import voluptuous as vol
    errors, ignored, platforms, rendered = [], [], {}, {}
    prefix, topic, raw = message["prefix"], message["topic"], message["payload"]
    trimmed = topic.replace(prefix + "/", "", 1)
    match = discovery.TOPIC_MATCHER.match(trimmed)
    if not topic.startswith(prefix + "/") or not match:
        errors.append("topic %r is not a discovery topic under %r" % (topic, prefix))
        return {"topic": topic, "components": platforms, "errors": errors, "ignored": ignored}
    if match.group(1) != "device":
        errors.append("topic %r is not device based discovery" % topic)
    payload = copy.deepcopy(raw)
    discovery._replace_all_abbreviations(payload)
    try:
        validated = DEVICE_DISCOVERY_SCHEMA(copy.deepcopy(payload))
        errors += ["device payload: HA dropped %s" % k for k in _dropped(payload, validated)]
        MQTT_ORIGIN_INFO_SCHEMA(payload["origin"])
    except vol.Invalid as why:
        errors.append("device payload: %s" % why)
        return {"topic": topic, "components": platforms, "errors": errors, "ignored": ignored}
    for component_id, component in payload["components"].items():
        where = "components.%s" % component_id
        config = dict(component)
        platform = config.pop("platform")
        platforms[component_id] = platform
        config["device"] = payload["device"]
        config["origin"] = payload["origin"]
        discovery._merge_common_device_options(config, payload)
        for key in NEWER_KEYS:
            if key in config:
                ignored.append("%s.%s (HA %s+)" % (where, key, NEWER_KEYS[key]))
                config.pop(key)
        module = importlib.import_module("homeassistant.components.mqtt." + platform)
        try:
            checked = module.DISCOVERY_SCHEMA(copy.deepcopy(config))
        except vol.Invalid as why:
            errors.append("%s (%s): %s" % (where, platform, why))
            continue
        errors += ["%s (%s): HA dropped %s" % (where, platform, key)
                   for key in _dropped(config, checked)]
        _check_templates(checked, errors, where)
        _render(component_id, checked, message.get("samples", {}), hass, rendered, errors)
    return {"topic": topic, "components": platforms, "errors": errors, "ignored": ignored,
            "rendered": rendered}


def _render(component_id, config, samples, hass, rendered, errors):
    """What HA would show: each value template applied to a sample payload of its topic, and
    the availability template to the sample status payload."""
    from homeassistant.helpers.template import Template
    pairs = [("value_template", config.get("state_topic"))]
    pairs += [(("availability", i), a.get("topic"))
              for i, a in enumerate(config.get("availability") or [])]
    for key, topic in pairs:
        if topic not in samples:
            continue
        source = (config["availability"][key[1]].get("value_template") if isinstance(key, tuple)
                  else config.get(key))
        if source is None:
            continue
        name = component_id if not isinstance(key, tuple) else component_id + ".availability"
        try:
            value = Template(source.template, hass).async_render_with_possible_json_value(
                samples[topic])
        except Exception as why:  # a template that fails on our own payload is a defect
            errors.append("%s: rendering on %s failed: %s" % (name, topic, why))
            continue
        rendered[name] = value


async def main():
    from homeassistant.const import __version__ as ha_version
    from homeassistant.core import HomeAssistant
    hass = HomeAssistant(tempfile.mkdtemp(prefix="ha-config-"))   # never started
    warnings = _Warnings()
    logging.getLogger("homeassistant").addHandler(warnings)
    reports = []
    for message in json.load(sys.stdin):
        before = len(warnings.records)
        report = validate(message, hass)
        report["errors"] += ["HA warned: %s" % w for w in warnings.records[before:]]
        reports.append(report)
    print(json.dumps({"ha_version": ha_version, "messages": reports}))


if __name__ == "__main__":
    asyncio.run(main())
