"""Fleet deploy times: `edgeagent deploy` at --forks 1/5/10 against the Ansible role
edgeagent.fleet.deploy (ansible-core, -f 1/5/10, one batch), all in one run on fresh device roots
served by one real sshd (tests/sshd.py, Type=notify-like systemctl stand-in), interleaved.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_fleet_deploy.py [--hosts 10] [--rounds 1]

Each contender deploys the same wheel to its own N fresh roots (a full install: upload, venv,
offline pip, detect, validate, switch, health gate). Then a rollback by hand is timed on the
forks-10 fleet after a second release. Needs `make ansible` (.venv-ansible). Prints seconds per
contender and the ratios to Ansible's time.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from sshd import DEVICE_PYTHON, REPO, deploy_command, session_sshd, session_wheel  # noqa: E402


def fleet(folder, server, hosts, model):
    path = os.path.join(folder, "fleet.yaml")
    with open(path, "w") as f:
        json.dump({"defaults": {"port": server.ports[0], "user": "root", "key": server.client_key,
                                "python": DEVICE_PYTHON, "models": [model],
                                "remote_root": os.path.join(folder, "roots", "{name}")},
                   "hosts": {"dev%02d" % i: {"address": "127.0.0.1", "device_id": "dev%02d" % i}
                             for i in range(1, hosts + 1)}}, f)
    return path


def edgeagent(server, known_hosts, inventory, *extra):
    started = time.monotonic()
    done = subprocess.run(deploy_command(server, known_hosts, "--inventory", inventory, *extra),
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True)
    if done.returncode != 0:
        raise SystemExit("edgeagent deploy failed:\n" + done.stdout[-3000:])
    return time.monotonic() - started


def ansible(server, known_hosts, folder, inventory, forks):
    source = os.path.join(folder, "fleet.edgeagent.yml")
    with open(source, "w") as f:
        f.write("plugin: edgeagent.fleet.fleet\nfleet: %s\n" % os.path.basename(inventory))
    playbook = os.path.join(folder, "all-at-once.yml")
    with open(playbook, "w") as f:
        f.write("- hosts: edgeagent\n  gather_facts: false\n  roles: [edgeagent.fleet.deploy]\n")
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=os.path.join(REPO, "ansible"),
               ANSIBLE_HOST_KEY_CHECKING="True", PYTHONPATH=REPO,
               ANSIBLE_PYTHON_INTERPRETER=DEVICE_PYTHON)
    started = time.monotonic()
    done = subprocess.run([os.path.join(REPO, ".venv-ansible", "bin", "ansible-playbook"),
                           "-i", source, playbook, "-f", str(forks),
                           "-e", "edgeagent_wheel=" + session_wheel(),
                           "-e", "edgeagent_controller_python=" + sys.executable,
                           "-e", "edgeagent_staging=" + os.path.join(folder, "staging"),
                           "-e", "ansible_ssh_common_args='-o UserKnownHostsFile=%s'"
                           % known_hosts], env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, universal_newlines=True)
    if done.returncode != 0:
        raise SystemExit("ansible-playbook failed:\n" + done.stdout[-3000:])
    return time.monotonic() - started


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--hosts", type=int, default=10)
    p.add_argument("--rounds", type=int, default=1)
    args = p.parse_args()
    server = session_sshd()
    work = tempfile.mkdtemp(prefix="bench-fleet-")
    try:
        known_hosts = server.write_known_hosts(os.path.join(work, "kh"), server.ports[:1])
        session_wheel()
        times = {}
        for rnd in range(args.rounds):
            for name in ("edgeagent forks 10", "ansible forks 10", "edgeagent forks 5",
                         "ansible forks 5", "edgeagent forks 1", "ansible forks 1"):
                folder = os.path.join(work, "%d-%s" % (rnd, name.replace(" ", "-")))
                os.makedirs(folder)
                model = os.path.join(folder, "m.onnx")
                with open(model, "w") as f:
                    f.write("ok")
                inventory = fleet(folder, server, args.hosts, model)
                forks = int(name.split()[-1])
                seconds = (ansible(server, known_hosts, folder, inventory, forks)
                           if name.startswith("ansible") else
                           edgeagent(server, known_hosts, inventory, "--forks", str(forks)))
                times.setdefault(name, []).append(seconds)
                print("round %d %-20s %6.1f s" % (rnd + 1, name, seconds), flush=True)
                if name == "edgeagent forks 10":
                    with open(model, "w") as f:
                        f.write("ok-2")
                    edgeagent(server, known_hosts, inventory, "--forks", "10")
                    times.setdefault("rollback forks 10", []).append(
                        edgeagent(server, known_hosts, inventory, "--forks", "10", "--rollback"))
                    print("round %d %-20s %6.1f s" % (rnd + 1, "rollback forks 10",
                                                      times["rollback forks 10"][-1]), flush=True)
        best = {k: min(v) for k, v in times.items()}
        base = best["ansible forks 10"]
        print("\n%d hosts, best of %d:" % (args.hosts, args.rounds))
        for name, seconds in sorted(best.items()):
            print("  %-20s %6.1f s  (%.2f x ansible forks 10)" % (name, seconds, seconds / base))
    finally:
        server.stop_services()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
