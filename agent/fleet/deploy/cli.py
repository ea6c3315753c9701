"""`edgeagent deploy`: argparse wiring. add_arguments() fills the subcommand's parser, run()
deploys and returns the exit code (0: every host ok/unchanged/restarted/planned; 7: some host
failed, was rolled back, refused or not runnable; 8: some host runs no healthy release).
Option mistakes raise ConfigError before any host is touched."""

import argparse
import json
import logging
import os
import sys
import time
from dataclasses import replace
from typing import Any, Dict, List, Optional

from ...errors import ConfigError
from .artifacts import Bundle, Hasher, build_wheel, make_bundle
from .errors import DOWN_EXIT_CODE, DeployError
from .health import PostSwitchCheck
from .host_deploy import DOWN, DeployOptions, HostDeploy
from .inventory import Host, is_file_ref, load_inventory, local_file, parse_host_spec
from .rollout import format_table, parse_serial, run_rollout
from .ssh import SshSettings
from .workspace import Workspace

log = logging.getLogger(__name__)
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("hosts", nargs="*", metavar="HOST", help="[user@]host[:port]")
    p.add_argument("--inventory", metavar="FILE", help="inventory YAML (see docs/deploy.md)")
    p.add_argument("--limit", metavar="NAMES", help="inventory hosts or groups, comma-separated")
    g = p.add_argument_group("rollout")
    g.add_argument("--forks", type=int, default=5, help="hosts deployed at once (default 5)")
    g.add_argument("--serial", metavar="STEPS", help="batch sizes, e.g. 1,5,100%% (default all)")
    g.add_argument("--max-fail", type=int, metavar="N",
                   help="stop starting hosts once more than N failed (default: never stop)")
    g.add_argument("--dry-run", action="store_true", help="print each host's plan; change nothing")
    g.add_argument("--rollback", action="store_true",
                   help="switch each host back to its previous release and restart")
    g.add_argument("--report-json", metavar="FILE", help="write per-host results as JSON")
    g = p.add_argument_group("what to install")
    g.add_argument("--wheel", metavar="FILE", help="agent wheel (default: build from this checkout)")
    g.add_argument("--wheelhouse", metavar="DIR|auto",
                   help="dependency wheels to upload (offline pip); auto: resolve them per "
                        "device for its Python, platform and profile (docs/deploy.md)")
    g.add_argument("--site-packages", choices=("auto", "yes", "no"), default="auto",
                   help="venv --system-site-packages (auto: on Jetson, or without --wheelhouse)")
    g.add_argument("--extras", metavar="A,B", default="",
                   help="agent extras to install from the wheelhouse, e.g. opencv,onnx")
    g.add_argument("--unit", metavar="FILE",
                   help="systemd unit (default: systemd/<service>.service of the checkout)")
    g.add_argument("--config", metavar="FILE", help="base config.yaml rendered per host")
    g.add_argument("--device-id", help="config device.id (one host only)")
    g.add_argument("--profile", help="config device.profile")
    g.add_argument("--pipeline", help="shipped pipeline name or local pipeline .yaml")
    g.add_argument("--model", action="append", default=[], metavar="FILE", help="model to upload")
    g.add_argument("--credential", action="append", default=[], metavar="NAME=FILE",
                   help="secret installed as /etc/edgeagent/credentials/NAME (mode 600)")
    g.add_argument("--keep", type=int, default=3, help="releases kept per host (default 3)")
    g = p.add_argument_group("connection")
    g.add_argument("--key", metavar="FILE", help="ssh identity file (default: agent / ssh config)")
    g.add_argument("--known-hosts", metavar="FILE", help="known_hosts file (default ssh's)")
    g.add_argument("--accept-new-host-keys", action="store_true",
                   help="add unknown host keys (a changed key is still refused)")
    g.add_argument("--ssh-config", metavar="FILE", help="ssh -F FILE")
    g.add_argument("--connect-timeout", type=int, default=10, metavar="S")
    g.add_argument("--remote-root", metavar="DIR", help="target prefix (default /; {name} = host)")
    g.add_argument("--remote-python", metavar="PATH", help="device python (default python3)")
    g = p.add_argument_group("service and health")
    g.add_argument("--service", default="edgeagent", help="systemd unit name (default edgeagent)")
    g.add_argument("--no-restart", action="store_true", help="switch, but do not restart")
    g.add_argument("--no-sudo", action="store_true", help="never prefix systemctl with sudo -n")
    g.add_argument("--health-timeout", type=float, default=60.0, metavar="S")
    g.add_argument("--health-settle", type=float, default=3.0, metavar="S",
                   help="units without readiness (not Type=notify) must stay up this long")
    g.add_argument("--health-cmd", metavar="CMD",
                   help="local command that must exit 0; {host} {address} {device} {release}")
    g.add_argument("--health-mqtt", metavar="BROKER[:PORT]",
                   help="also wait for status online and an advancing seq on <prefix>/<device>/#")
    g.add_argument("--attempts", type=int, default=2, metavar="N",
                   help="a release that failed its health gate N times is refused (default 2)")
    g.add_argument("--force", action="store_true", help="activate a refused release anyway")
    g.add_argument("--no-validate", action="store_true",
                   help="skip the release's `edgeagent validate` on the device before the switch")
    g.add_argument("--lock-wait", type=float, default=180.0, metavar="S",
                   help="wait this long for another deploy on a device to end (default 180)")


def run(args: argparse.Namespace) -> int:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(message)s")
    hosts = _hosts(args)
    options = _options(args)
    ssh = SshSettings(known_hosts=args.known_hosts, accept_new_host_keys=args.accept_new_host_keys,
                      ssh_config=args.ssh_config, connect_timeout_s=args.connect_timeout)
    started = time.monotonic()
    with Workspace() as work:
        ssh = replace(ssh, control_dir=os.path.join(work, "c"))
        os.makedirs(ssh.control_dir, mode=0o700)
        hasher = Hasher()
        bundle = None if args.rollback else _bundle(args, work, hasher)
        index = {h.name: i for i, h in enumerate(hosts)}

        def deploy_one(host: Host) -> Any:
            job = HostDeploy(host, bundle, options, ssh, work, hasher, "h%d" % index[host.name])
            return job.run(rollback=args.rollback)

        results = run_rollout(hosts, deploy_one, args.forks, parse_serial(args.serial),
                              args.max_fail)
    print(format_table(results))
    log.info("%d hosts in %.1f s", len(results), time.monotonic() - started)
    if args.report_json:
        with open(args.report_json, "w") as f:
            json.dump({"seconds": time.monotonic() - started,
                       "hosts": [r.to_json() for r in results]}, f, indent=1)
    if any(r.result == DOWN for r in results):
        log.error("%s: NO HEALTHY RELEASE RUNS (the rollback target failed too); see the table",
                  ", ".join(r.host for r in results if r.result == DOWN))
        return DOWN_EXIT_CODE
    # After --rollback, "rolled back" is the wanted result; after a deploy it is a failure.
    bad = {"failed", "aborted", "skipped", "refused", "not runnable"} | (set() if args.rollback else {"rolled back"})
    return DeployError.exit_code if any(r.result in bad for r in results) else 0


def _cli_defaults(args: argparse.Namespace) -> Dict[str, Any]:
    """Command-line values as the lowest inventory layer (a host or group entry wins)."""
    cwd = os.getcwd()
    d = {}  # type: Dict[str, Any]
    for key, value in (("key", args.key), ("config", args.config)):
        if value:
            d[key] = local_file(value, cwd, "command line", "--" + key)
    for key, value in (("remote_root", args.remote_root), ("python", args.remote_python),
                       ("device_id", args.device_id), ("profile", args.profile)):
        if value:
            d[key] = value
    if args.pipeline:
        d["pipeline"] = (local_file(args.pipeline, cwd, "command line", "--pipeline")
                         if is_file_ref(args.pipeline) else args.pipeline)
    if args.model:
        d["models"] = [local_file(m, cwd, "command line", "--model") for m in args.model]
    creds = {}
    for item in args.credential:
        name, sep, path = item.partition("=")
        if not sep or not name:
            raise ConfigError("--credential %s: expected NAME=FILE" % item)
        creds[name] = local_file(path, cwd, "command line", "--credential " + name)
    if creds:
        d["credentials"] = creds
    return d


def _hosts(args: argparse.Namespace) -> List[Host]:
    defaults = _cli_defaults(args)
    if args.inventory and args.hosts:
        raise ConfigError("give hosts either as arguments or with --inventory, not both")
    if args.inventory:
        limit = [w for w in (args.limit or "").split(",") if w]
        hosts = load_inventory(args.inventory, defaults, limit)
    elif args.hosts:
        hosts = [parse_host_spec(spec, defaults) for spec in args.hosts]
    else:
        raise ConfigError("no hosts: give user@host[:port] arguments or --inventory FILE")
    names = [h.name for h in hosts]
    if len(set(names)) != len(names):
        raise ConfigError("a host is listed twice: %s" % ", ".join(
            sorted({n for n in names if names.count(n) > 1})))
    if args.device_id and len(hosts) > 1:
        raise ConfigError("--device-id %s with %d hosts: device ids must differ; set device_id "
                          "per host in the inventory" % (args.device_id, len(hosts)))
    return hosts


def _options(args: argparse.Namespace) -> DeployOptions:
    for name, value, low in (("--forks", args.forks, 1), ("--keep", args.keep, 2),
                             ("--max-fail", args.max_fail, 0), ("--attempts", args.attempts, 1)):
        if value is not None and value < low:
            raise ConfigError("%s %s: must be >= %d" % (name, value, low))
    health = PostSwitchCheck(service=args.service, timeout_s=args.health_timeout,
                            settle_s=args.health_settle, cmd=args.health_cmd,
                            mqtt=_broker(args.health_mqtt))
    return DeployOptions(keep=args.keep, restart=not args.no_restart, sudo=not args.no_sudo,
                         site_packages=args.site_packages, dry_run=args.dry_run, health=health,
                         extras=tuple(e for e in args.extras.split(",") if e),
                         attempts=args.attempts, force=args.force, validate=not args.no_validate,
                         lock_wait_s=max(0.0, args.lock_wait))


def _broker(text: Optional[str]) -> Optional[tuple]:
    if not text:
        return None
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "1883")
    if not port.isdigit():
        raise ConfigError("--health-mqtt %s: expected BROKER[:PORT]" % text)
    return (host, int(port))


def _bundle(args: argparse.Namespace, work: str, hasher: Hasher) -> Bundle:
    wheel = args.wheel
    if wheel and not os.path.isfile(wheel):
        raise ConfigError("--wheel %s: no such file" % wheel)
    if not wheel:
        if not os.path.isfile(os.path.join(REPO_ROOT, "pyproject.toml")):
            raise ConfigError("no checkout at %s to build the agent from: pass --wheel FILE"
                              % REPO_ROOT)
        started = time.monotonic()
        wheel = build_wheel(REPO_ROOT, os.path.join(work, "wheel"))
        log.info("built %s in %.1f s", os.path.basename(wheel), time.monotonic() - started)
    unit = args.unit
    if unit and not os.path.isfile(unit):
        raise ConfigError("--unit %s: no such file" % unit)
    if not unit:
        candidate = os.path.join(REPO_ROOT, "systemd", args.service + ".service")
        unit = candidate if os.path.isfile(candidate) else None
        if unit is None:
            log.warning("no %s: the devices' unit files are left as they are", candidate)
    return make_bundle(wheel, args.wheelhouse, unit, args.service, hasher)
