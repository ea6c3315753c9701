"""`pip download` of the wheels one device needs into a folder (workstation side), for
agent.fleet.deploy.wheelhouse: --platform/--python-version tags of the device, and a requirement that
has no wheel but a pure-Python sdist (paho-mqtt 1.6.1 for Python 3.6) built into a
py3-none-any wheel here."""

import logging
import os
import re
import shutil
import subprocess
import tempfile
from typing import List, Optional, Sequence, Tuple

from .errors import DeployError

try:
    from packaging.requirements import Requirement
except ImportError:   # a bare workstation venv: pip vendors the same library
    from pip._vendor.packaging.requirements import Requirement  # type: ignore

log = logging.getLogger(__name__)


def download_wheels(pip: Sequence[str], folder: str, target, wanted: List[str]
                    ) -> Tuple[bool, str]:
    """(True, "") when every requirement in `wanted` has a wheel for `target` (a
    wheelhouse.Target) in `folder`; (False, why) when one has none. DeployError when pip fails
    for another reason (no network, bad index)."""
    built = []  # type: List[str]
    while True:
        argv = list(pip) + ["download", "-q", "--disable-pip-version-check",
                            "--only-binary=:all:", "--implementation", "cp",
                            "--python-version", "%d.%d" % target.python, "-d", folder,
                            "--find-links", folder]
        for tag in target.platforms():
            argv += ["--platform", tag]
        done = subprocess.run(argv + wanted, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              universal_newlines=True)
        if done.returncode == 0:
            return True, ""
        missing = missing_requirement(done.stdout, wanted)
        if missing is None:
            raise DeployError("wheelhouse for %s: pip download failed: %s"
                              % (target.describe(), last_line(done.stdout)))
        if missing in built or not build_pure(pip, missing, target, folder):
            return False, "pip download: %s" % last_line(done.stdout)
        built.append(missing)


def build_pure(pip: Sequence[str], requirement: str, target, folder: str) -> bool:
    """Build a wheel from the newest sdist the device's Python may use; keep it only if it
    is pure Python (py3-none-any)."""
    quiet = ["-q", "--disable-pip-version-check", "--no-deps"]
    with tempfile.TemporaryDirectory(prefix="ea-sdist-") as out:
        sdist_dir, wheel_dir = os.path.join(out, "sdist"), os.path.join(out, "wheel")
        got = subprocess.run(list(pip) + ["download"] + quiet + [
            "--no-binary=:all:", "--implementation", "cp", "--python-version",
            "%d.%d" % target.python, "-d", sdist_dir, requirement],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        sdists = os.listdir(sdist_dir) if got.returncode == 0 else []
        if len(sdists) != 1:
            return False
        done = subprocess.run(list(pip) + ["wheel"] + quiet + [
            "-w", wheel_dir, os.path.join(sdist_dir, sdists[0])],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        wheels = [f for f in os.listdir(wheel_dir) if f.endswith(".whl")] \
            if done.returncode == 0 else []
        if len(wheels) != 1 or not wheels[0].endswith("-none-any.whl"):
            return False
        shutil.move(os.path.join(wheel_dir, wheels[0]), os.path.join(folder, wheels[0]))
        log.info("wheelhouse: built %s from its sdist (pure Python)", wheels[0])
        return True


def missing_requirement(pip_output: str, wanted: Sequence[str]) -> Optional[str]:
    """The requirement pip found no usable wheel for (None: pip failed for another reason,
    e.g. no network)."""
    found = re.findall(r"No matching distribution found for (\S+)", pip_output)
    if found:
        return found[-1]
    found = re.findall(r"Package '([^']+)' requires a different Python", pip_output)
    if not found:
        return None
    name = canonical(found[-1])
    for line in wanted:   # pip names the package; rebuild it with our version limits
        if canonical(Requirement(line).name) == name:
            return line
    return found[-1]


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR:")]
    return (errors or lines or ["(no output)"])[-1]
