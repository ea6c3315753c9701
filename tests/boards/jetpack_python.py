"""JetPack 4.6's system Python for the emulated Nano (tests/boards/board.py): pyenv's 3.6.15
copied, with Ubuntu 18.04's pip 9.0.1 and JetPack's system numpy and OpenCV in its
site-packages. Built once per recipe under the CI cache (rebuilt when absent)."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from typing import Dict

import pi_root

PY36 = os.environ.get("EDGEAGENT_PY36",
                      os.path.expanduser("~/.pyenv/versions/3.6.15/bin/python3.6"))
# JetPack 4.6 (L4T R32.7, Ubuntu 18.04): pip 9.0.1 from python3-pip, numpy 1.13 and OpenCV 4.1.1
# with GStreamer as system packages. PyPI's nearest for 3.6 stand in for the last two.
JETPACK_RECIPE = {"python": "3.6.15", "pip": "pip==9.0.1",
                  "system": ["numpy==1.19.5", "opencv-python-headless==4.6.0.66"]}


def _key(recipe: Dict) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]


def _pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"] + list(args),
                   check=True)


def jetpack_python() -> str:
    """JetPack 4.6's system python3: a copy of pyenv's 3.6.15 whose pip is 9.0.1 and whose
    site-packages hold the system numpy and cv2. Cached; returns bin/python3.6."""
    with pi_root.cache_lock("jetpack46-python"):
        return _jetpack_python()


def _jetpack_python() -> str:
    folder = os.path.join(pi_root.CACHE, "jetpack46-python-%s" % _key(JETPACK_RECIPE))
    python = os.path.join(folder, "bin", "python3.6")
    if os.path.isfile(os.path.join(folder, "COMPLETE")):
        return python
    if not os.path.isfile(PY36):
        raise RuntimeError("%s missing: pyenv install 3.6.15 (JetPack 4.6's Python)" % PY36)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(os.path.dirname(os.path.dirname(os.path.realpath(PY36))), folder,
                    symlinks=True)
    site = os.path.join(folder, "lib", "python3.6", "site-packages")
    _pip("install", "--only-binary=:all:", "--implementation", "cp", "--python-version", "3.6",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux2010_x86_64",
         "--no-deps", "--target", site, *JETPACK_RECIPE["system"])
    wheels = os.path.join(folder, ".pip9")
    _pip("download", "--no-deps", "-d", wheels, JETPACK_RECIPE["pip"])
    wheel = os.path.join(wheels, os.listdir(wheels)[0])
    subprocess.run([python, "-m", "pip", "install", "-q", "--no-index", wheel], check=True)
    version = subprocess.run([python, "-m", "pip", "--version"], stdout=subprocess.PIPE,
                             universal_newlines=True, check=True).stdout
    if not version.startswith("pip 9.0.1 "):
        raise RuntimeError("pip 9.0.1 did not install: %s" % version)
    shutil.rmtree(wheels)
    with open(os.path.join(folder, "COMPLETE"), "w") as f:
        json.dump(JETPACK_RECIPE, f)
    return python
