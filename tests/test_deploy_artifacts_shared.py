"""Against a real sshd device (tests/sshd.py): a code change gets a new venv, but the dependency
files it installs are hard links to the ones the previous release's venv already has."""

import glob
import os

from sshd import current_release, run_deploy, session_sshd, session_wheelhouse

from agent.fleet.deploy.artifacts import _copy_checkout, build_wheel

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _changed_wheel(tmp_path):
    src = str(tmp_path / "src")
    os.makedirs(src)
    _copy_checkout(REPO, src)
    with open(os.path.join(src, "agent", "__init__.py"), "a") as f:
        f.write("\n# a code change\n")
    return build_wheel(src, str(tmp_path / "wheel"))


def _numpy_core(root):
    venv = os.path.realpath(os.path.join(root, "opt", "edgeagent", current_release(root), "venv"))
    found = glob.glob(os.path.join(venv, "lib", "python3*", "site-packages", "numpy", "*",
                                   "_multiarray_umath*.so"))
    assert len(found) == 1, found
    return venv, found[0]


def test_code_change_gets_a_new_venv_whose_dependency_files_are_hard_links(tmp_path):
    # given a device deployed into an isolated venv from a wheelhouse
    server = session_sshd()
    known = server.write_known_hosts(str(tmp_path / "known_hosts"), server.ports[:1])
    root = str(tmp_path / "dev")
    args = ["root@127.0.0.1:%d" % server.ports[0], "--remote-root", root, "--wheelhouse",
            session_wheelhouse(), "--site-packages", "no"]
    first, _ = run_deploy(server, known, *args)
    assert first.returncode == 0, first.stderr
    venv1, core1 = _numpy_core(root)
    # when the agent's code changes
    second, report = run_deploy(server, known, *(args + ["--wheel", _changed_wheel(tmp_path)]),
                                report=str(tmp_path / "r.json"))
    # then the new release has its own venv, and numpy's files are the same inodes
    assert second.returncode == 0, second.stderr
    venv2, core2 = _numpy_core(root)
    assert venv1 != venv2
    assert os.stat(core1).st_ino == os.stat(core2).st_ino
    assert os.path.exists(os.path.join(root, "opt", "edgeagent", "store"))
    # and of the wheels only the agent's travelled again
    wheels = [u for u in report["hosts"][0]["uploaded"] if u.startswith("wheels/")]
    assert len(wheels) == 1 and wheels[0].startswith("wheels/edgeagent-")
