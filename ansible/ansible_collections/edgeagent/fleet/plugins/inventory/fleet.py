# -*- coding: utf-8 -*-
"""edgeagent.fleet.fleet: the project's fleet file (the `edgeagent deploy --inventory` YAML) as
Ansible inventory. The file is read by the project's own parser (agent.fleet.deploy.ansible_bridge), so
both tools see the same hosts, defaults, groups and errors."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
name: fleet
short_description: edgeagent's fleet file as inventory, grouped by profile and site
description:
  - Reads the fleet YAML that C(edgeagent deploy --inventory) reads, through the project's own
    parser (C(python -m agent.fleet.deploy.ansible_bridge hosts)).
  - Every host joins group C(edgeagent), C(profile_<profile>), C(site_<site>) and the fleet
    file's own groups; names are made safe for Ansible (C(jetson-nano) -> C(jetson_nano)).
  - Sets C(ansible_host), C(ansible_port), C(ansible_user), C(ansible_ssh_private_key_file) and
    C(edgeagent_*) variables the C(edgeagent.fleet.deploy) role reads.
  - The inventory source file name must end in C(.edgeagent.yml) or C(.edgeagent.yaml).
options:
  plugin:
    description: The name of this plugin.
    required: true
    choices: [edgeagent.fleet.fleet]
  fleet:
    description: The fleet file, relative to this inventory source file.
    required: true
    type: str
  python:
    description: A Python that can import the edgeagent package (its checkout on PYTHONPATH or
      installed).
    type: str
    default: python3
"""

EXAMPLES = r"""
# fleet.edgeagent.yml
plugin: edgeagent.fleet.fleet
fleet: fleet.yaml
"""

import json
import os
import subprocess

from ansible.errors import AnsibleParserError
from ansible.plugins.inventory import BaseInventoryPlugin

HOST_VARS = {"remote_root": "edgeagent_remote_root", "python": "edgeagent_python",
             "device_id": "edgeagent_device_id", "profile": "edgeagent_profile",
             "site": "edgeagent_site"}


class InventoryModule(BaseInventoryPlugin):
    NAME = "edgeagent.fleet.fleet"

    def verify_file(self, path):
        return super(InventoryModule, self).verify_file(path) and \
            path.endswith((".edgeagent.yml", ".edgeagent.yaml"))

    def parse(self, inventory, loader, path, cache=True):
        super(InventoryModule, self).parse(inventory, loader, path, cache)
        self._read_config_data(path)
        fleet = os.path.join(os.path.dirname(os.path.abspath(path)), self.get_option("fleet"))
        argv = [self.get_option("python"), "-m", "agent.fleet.deploy.ansible_bridge", "hosts", fleet]
        try:
            done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  universal_newlines=True)
        except OSError as exc:
            raise AnsibleParserError("%s: cannot run %s: %s" % (path, argv[0], exc))
        if done.returncode != 0:
            raise AnsibleParserError("%s: %s" % (path, done.stderr.strip().splitlines()[-1]
                                                 if done.stderr.strip() else done.returncode))
        self.inventory.add_group("edgeagent")
        for host in json.loads(done.stdout):
            self._add(host, fleet)

    def _group(self, name):
        safe = self._sanitize_group_name(name)
        self.inventory.add_group(safe)
        return safe

    def _add(self, host, fleet):
        name = host["name"]
        self.inventory.add_host(name, group="edgeagent")
        groups = list(host["groups"])
        groups += ["profile_" + host["profile"]] if host.get("profile") else []
        groups += ["site_" + host["site"]] if host.get("site") else []
        for group in groups:
            self.inventory.add_host(name, group=self._group(group))
        self.inventory.set_variable(name, "ansible_host", host["address"])
        self.inventory.set_variable(name, "ansible_port", host["port"])
        if host.get("user"):
            self.inventory.set_variable(name, "ansible_user", host["user"])
        if host.get("key"):
            self.inventory.set_variable(name, "ansible_ssh_private_key_file", host["key"])
        for key, var in HOST_VARS.items():
            if host.get(key) is not None:
                self.inventory.set_variable(name, var, host[key])
        self.inventory.set_variable(name, "edgeagent_fleet", fleet)
        self.inventory.set_variable(name, "edgeagent_name", name)
