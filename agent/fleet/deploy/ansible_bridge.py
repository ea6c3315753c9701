"""The project's side of the Ansible collection edgeagent.fleet (ansible/ansible_collections/):
one parser for the fleet file and one release planner, whether the deploy runs from
`edgeagent deploy` or from Ansible.

    python -m agent.fleet.deploy.ansible_bridge hosts FLEET.yaml
        every host as JSON (the inventory plugin groups them by profile and site)
    python -m agent.fleet.deploy.ansible_bridge plan FLEET.yaml HOST --staging DIR --jetson yes|no
           [--wheel FILE] [--wheelhouse DIR] [--site-packages auto|yes|no] [--extras A,B]
        the host's release: name, files to upload (local path, sha256, dest) and the arguments
        of the device helper's `install` op, as JSON

Bad input is one line on stderr and exit 2 (ConfigError), like the CLI.
"""

import argparse
import json
import os
import sys
from typing import Any, Dict, List

from ...errors import EdgeAgentError
from .artifacts import Hasher, make_bundle, plan_release
from .host_deploy import use_site_packages
from .inventory import Host, load_inventory


def host_vars(host: Host) -> Dict[str, Any]:
    return {"name": host.name, "address": host.address, "port": host.port, "user": host.user,
            "key": host.key, "groups": list(host.groups), "remote_root": host.remote_root,
            "python": host.python, "device_id": host.device_id, "profile": host.profile,
            "site": host.site}


def plan(args: argparse.Namespace) -> Dict[str, Any]:
    hosts = {h.name: h for h in load_inventory(args.fleet, {})}
    if args.host not in hosts:
        raise EdgeAgentError("%s: no host %s (known: %s)" % (args.fleet, args.host,
                                                             ", ".join(sorted(hosts))))
    host = hosts[args.host]
    hasher = Hasher()
    bundle = make_bundle(args.wheel, args.wheelhouse, args.unit, args.service, hasher)
    site = use_site_packages(args.site_packages, {"jetson": args.jetson == "yes"}, bundle)
    os.makedirs(args.staging, exist_ok=True)
    extras = tuple(e for e in args.extras.split(",") if e)
    release = plan_release(host, bundle, site, args.staging, hasher, extras)

    def files(items: Any) -> List[Dict[str, Any]]:
        return [{"dest": f.dest, "name": f.dest, "sha256": f.sha256, "local": f.local}
                for f in items]
    return {"release": release.name, "uploads": files(release.files + release.credentials),
            "install": {"release": release.name, "wheel": release.wheel, "site_packages": site,
                        "extras": list(extras), "files": files(release.files),
                        "credentials": files(release.credentials)}}


def main(argv: Any = None) -> int:
    p = argparse.ArgumentParser(prog="python -m agent.fleet.deploy.ansible_bridge")
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("hosts").add_argument("fleet")
    q = sub.add_parser("plan")
    q.add_argument("fleet")
    q.add_argument("host")
    q.add_argument("--staging", required=True)
    q.add_argument("--jetson", choices=("yes", "no"), default="no")
    q.add_argument("--wheel", required=True)
    q.add_argument("--wheelhouse")
    q.add_argument("--unit")
    q.add_argument("--service", default="edgeagent")
    q.add_argument("--site-packages", choices=("auto", "yes", "no"), default="auto")
    q.add_argument("--extras", default="")
    args = p.parse_args(argv)
    try:
        if args.what == "hosts":
            out = [host_vars(h) for h in load_inventory(args.fleet, {})]  # type: Any
        else:
            out = plan(args)
    except EdgeAgentError as exc:
        sys.stderr.write("edgeagent: %s\n" % exc)
        return getattr(exc, "exit_code", 1)
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
