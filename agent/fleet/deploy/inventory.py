"""Which hosts to deploy to, and what each gets: `user@host:port` arguments or an inventory YAML.

Inventory file::

    defaults:                 # every host (command-line values fill in below these)
      user: deploy
      key: ~/.ssh/edge_ed25519
      pipeline: face-detect   # a shipped pipeline name, or a local .yaml file to upload
      mqtt: {host: broker.lan}
    groups:
      nanos: {profile: jetson-nano, models: [models/face.onnx]}
    hosts:
      nano-01: {address: 10.0.0.21, groups: [nanos], device_id: nano-01}

A host's value wins over its groups' (in listed order), which win over `defaults`; `mqtt`,
`settings` and `credentials` mappings merge key by key. Relative paths are relative to the
inventory file. Unknown keys are ConfigErrors naming the file and the key.
"""

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import yaml

from ...checks import need_int, need_list, need_mapping, need_str, reject_unknown
from ...errors import ConfigError

SHARED_KEYS = ("user", "port", "key", "remote_root", "python", "device_id", "profile", "pipeline",
               "models", "mqtt", "settings", "credentials", "config", "site")
HOST_KEYS = SHARED_KEYS + ("address", "groups")
TOP_KEYS = ("defaults", "groups", "hosts")
MERGED_KEYS = ("mqtt", "settings", "credentials")
PATH_KEYS = ("key", "config")

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_[][A-Za-z0-9_.:@%[\]-]*$")
_SAFE_REMOTE_PATH = re.compile(r"^/[A-Za-z0-9_./{}-]*$")
_SAFE_CREDENTIAL = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_SPEC = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\s]+))"
                   r"(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Host:
    """One device and what it gets."""

    name: str                                # inventory name (unique); labels log lines
    address: str                             # what ssh connects to
    user: Optional[str] = None               # None: ssh's default / ssh config
    port: int = 22
    key: Optional[str] = None                # identity file; None: ssh-agent / default keys
    groups: Tuple[str, ...] = ()
    remote_root: str = "/"                   # target prefix ("{name}" is replaced)
    python: str = "python3"                  # device interpreter for the helper and the venv
    device_id: Optional[str] = None          # None: the agent's default (hostname)
    profile: Optional[str] = None
    site: Optional[str] = None               # where the device stands (groups fleets in Ansible)
    pipeline: Optional[str] = None           # shipped name or local file path
    models: Tuple[str, ...] = ()             # local files uploaded to <release>/models/
    mqtt: Mapping[str, Any] = field(default_factory=dict)
    settings: Mapping[str, Any] = field(default_factory=dict)   # merged into config.yaml
    credentials: Tuple[Tuple[str, str], ...] = ()   # (name, local file) -> etc/.../credentials
    config: Optional[str] = None             # local base config.yaml rendered per host


def parse_host_spec(spec: str, defaults: Mapping[str, Any], where: str = "command line") -> Host:
    """`[user@]host[:port]` (IPv6 as `[addr]:port`) on top of ``defaults``."""
    match = _SPEC.match(spec)
    if not match or spec.startswith("-"):
        raise ConfigError("%s: host %r: expected [user@]host[:port], e.g. deploy@nano-01:22"
                          % (where, spec))
    entry = dict(defaults)
    entry["address"] = match.group("v6") or match.group("host")
    if match.group("user"):
        entry["user"] = match.group("user")
    if match.group("port"):
        entry["port"] = int(match.group("port"))
    return _build_host(spec, entry, where, "")


def load_inventory(path: str, defaults: Mapping[str, Any],
                   limit: Optional[Sequence[str]] = None) -> List[Host]:
    """Hosts of an inventory file, optionally limited to some host or group names."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as exc:
        raise ConfigError("%s: cannot read inventory: %s" % (path, exc.strerror))
    except yaml.YAMLError as exc:
        raise ConfigError("%s: not valid YAML: %s" % (path, str(exc).replace("\n", " ")))
    data = need_mapping(data, path, "")
    reject_unknown(data, TOP_KEYS, path)
    base = os.path.dirname(os.path.abspath(path))
    layer = _check_layer(data.get("defaults") or {}, SHARED_KEYS, path, "defaults.", base)
    groups = {name: _check_layer(g or {}, SHARED_KEYS, path, "groups.%s." % name, base)
              for name, g in need_mapping(data.get("groups") or {}, path, "groups").items()}
    hosts_data = need_mapping(data.get("hosts"), path, "hosts")
    hosts = [_inventory_host(str(name), h, dict(defaults), layer, groups, path, base)
             for name, h in hosts_data.items()]
    return select_hosts(hosts, limit, path)


def select_hosts(hosts: List[Host], limit: Optional[Sequence[str]], path: str) -> List[Host]:
    if not limit:
        return hosts
    known = {h.name for h in hosts} | {g for h in hosts for g in h.groups}
    for word in limit:
        if word not in known:
            raise ConfigError("--limit %s: no host or group of that name in %s; known: %s"
                              % (word, path, ", ".join(sorted(known))))
    return [h for h in hosts if h.name in limit or set(h.groups) & set(limit)]


def _inventory_host(name: str, raw: Any, cli: Dict[str, Any], layer: Dict[str, Any],
                    groups: Dict[str, Dict[str, Any]], path: str, base: str) -> Host:
    prefix = "hosts.%s." % name
    own = _check_layer(raw or {}, HOST_KEYS, path, prefix, base)
    entry = merge_layers([cli, layer])
    for group in need_list(own.get("groups", []), path, prefix + "groups"):
        if group not in groups:
            raise ConfigError("%s: %sgroups: unknown group %r; define it under groups: (known: %s)"
                              % (path, prefix, group, ", ".join(sorted(groups)) or "none"))
        entry = merge_layers([entry, groups[group]])
    entry = merge_layers([entry, own])
    entry.setdefault("address", name)
    return _build_host(name, entry, path, prefix)


def merge_layers(layers: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    merged = {}  # type: Dict[str, Any]
    for layer in layers:
        for key, value in layer.items():
            if key in MERGED_KEYS and isinstance(merged.get(key), Mapping):
                value = deep_merge(merged[key], value)
            merged[key] = value
    return merged


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            value = deep_merge(out[key], value)
        out[key] = value
    return out


def _check_layer(raw: Any, allowed: Sequence[str], path: str, prefix: str,
                 base: str) -> Dict[str, Any]:
    """Validate one mapping's keys and make its local paths absolute (relative to ``base``)."""
    layer = dict(need_mapping(raw, path, prefix.rstrip(".")))
    reject_unknown(layer, allowed, path, prefix)
    for key in PATH_KEYS:
        if key in layer:
            layer[key] = local_file(need_str(layer[key], path, prefix + key), base, path,
                                    prefix + key)
    if "models" in layer:
        layer["models"] = [local_file(m, base, path, prefix + "models") for m in
                           need_list(layer["models"], path, prefix + "models")]
    if "pipeline" in layer:
        value = need_str(layer["pipeline"], path, prefix + "pipeline")
        if is_file_ref(value):
            value = local_file(value, base, path, prefix + "pipeline")
        layer["pipeline"] = value
    if "credentials" in layer:
        creds = need_mapping(layer["credentials"], path, prefix + "credentials")
        layer["credentials"] = {str(k): local_file(need_str(v, path, "%scredentials.%s" % (
            prefix, k)), base, path, "%scredentials.%s" % (prefix, k)) for k, v in creds.items()}
    return layer


def is_file_ref(value: str) -> bool:
    """A pipeline value naming a local file (uploaded) rather than a shipped pipeline."""
    return value.endswith((".yaml", ".yml")) or os.sep in value


def local_file(value: str, base: str, path: str, key: str) -> str:
    """``value`` made absolute against ``base``; it must be an existing file."""
    full = os.path.join(base, os.path.expanduser(value))
    if not os.path.isfile(full):
        raise ConfigError("%s: %s = %r: no such file (%s)" % (path, key, value, full))
    return full


def _build_host(name: str, entry: Mapping[str, Any], path: str, prefix: str) -> Host:
    def key(k: str) -> str:
        return prefix + k
    if not _SAFE_NAME.match(name):
        raise ConfigError("%s: host name %r: use letters, digits, '.', '_', '-'" % (path, name))
    address = need_str(entry["address"], path, key("address"))
    if address.startswith("-"):
        raise ConfigError("%s: %s = %r: must not start with '-'" % (path, key("address"), address))
    root = need_str(entry.get("remote_root", "/"), path, key("remote_root")).replace("{name}", name)
    if not _SAFE_REMOTE_PATH.match(root):
        raise ConfigError("%s: %s = %r: must be an absolute path of letters, digits, '._-/'"
                          % (path, key("remote_root"), root))
    host = Host(name=name, address=address, port=need_int(entry.get("port", 22), path,
                                                          key("port"), 1, 65535),
                remote_root=os.path.normpath(root), groups=tuple(entry.get("groups", ())))
    host = replace(host, **{k: need_str(entry[k], path, key(k)) for k in
                            ("user", "key", "python", "device_id", "profile", "pipeline", "config",
                             "site")
                            if entry.get(k) is not None})
    return replace(
        host, models=tuple(entry.get("models", ())),
        mqtt=dict(need_mapping(entry.get("mqtt") or {}, path, key("mqtt"))),
        settings=dict(need_mapping(entry.get("settings") or {}, path, key("settings"))),
        credentials=_credentials(entry.get("credentials") or {}, path, key("credentials")))


def _credentials(creds: Mapping[str, str], path: str, key: str) -> Tuple[Tuple[str, str], ...]:
    for name in creds:
        if not _SAFE_CREDENTIAL.match(name):
            raise ConfigError("%s: %s.%s: credential names use letters, digits, '.', '_', '-'"
                              % (path, key, name))
    return tuple(sorted(creds.items()))
