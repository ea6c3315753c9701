"""What makes repeated deploys fast: the agent wheel built once per source hash, the venv keyed
by dependencies only (config stays out), per-device wheelhouses resolved once, installed files
shared between venvs through hard links on the device."""

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from agent.fleet.deploy import remote_helper
from agent.fleet.deploy.artifacts import (Hasher, _copy_checkout, build_wheel, make_bundle,
                                    plan_release, profile_backends)
from agent.fleet.deploy.inventory import parse_host_spec
from agent.fleet.deploy.wheelhouse import NoWheelError, Target, WheelhouseResolver, requirements_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture()
def wheel_cache(tmp_path, monkeypatch):
    folder = str(tmp_path / "wheel-cache")
    monkeypatch.setenv("EDGEAGENT_WHEEL_CACHE", folder)
    return folder


def test_wheel_is_built_once_per_source_hash(tmp_path, wheel_cache, caplog):
    # given a copy of the checkout
    src = str(tmp_path / "src")
    os.makedirs(src)
    _copy_checkout(REPO, src)
    # when building twice from the same source
    first = build_wheel(src, str(tmp_path / "out1"))
    caplog.clear()
    caplog.set_level("INFO", logger="agent.fleet.deploy.agent_wheel")
    second = build_wheel(src, str(tmp_path / "out2"))
    # then the second is the cached wheel, byte for byte
    assert "cached" in caplog.text
    with open(first, "rb") as a, open(second, "rb") as b:
        assert a.read() == b.read()
    assert len(os.listdir(wheel_cache)) == 1
    # and a changed source builds a new wheel
    with open(os.path.join(src, "agent", "__init__.py"), "a") as f:
        f.write("\n# changed\n")
    caplog.clear()
    third = build_wheel(src, str(tmp_path / "out3"))
    assert "cached" not in caplog.text
    with zipfile.ZipFile(third) as z:
        assert b"# changed" in z.read("agent/__init__.py")
    assert len([e for e in os.listdir(wheel_cache) if not e.startswith(".")]) == 2


def _write(path, text):
    with open(str(path), "w") as f:
        f.write(text)
    return str(path)


def _plan(tmp_path, config_text, dep_text="dep-1"):
    wheel = _write(tmp_path / "edgeagent-0.1.0-py3-none-any.whl", "wheel")
    house = tmp_path / "house"
    house.mkdir(exist_ok=True)
    _write(house / "numpy-1.0-py3-none-any.whl", dep_text)
    config = _write(tmp_path / "base.yaml", config_text)
    hasher = Hasher()
    bundle = make_bundle(wheel, str(house), None, "edgeagent", hasher)
    host = parse_host_spec("root@127.0.0.1:22", {"config": config})
    staging = tmp_path / "staging"
    staging.mkdir(exist_ok=True)
    return plan_release(host, bundle, False, str(staging), hasher, ("onnx",))


@pytest.mark.parametrize("config,profile,probe,expected", [
    ("{}", None, {"jetson": True, "arch": "aarch64"}, ("tensorrt", "onnxruntime", "tflite")),
    ("{}", None, {"jetson": False, "arch": "aarch64"}, ("tflite", "onnxruntime")),
    ("{}", "raspberrypi-4", {"jetson": False, "arch": "aarch64"}, ("tflite", "onnxruntime")),
    ("backend: onnxruntime\n", "raspberrypi-4", {"jetson": False, "arch": "aarch64"},
     ("onnxruntime",)),
])
def test_wheelhouse_backends_follow_the_config_then_the_profile(tmp_path, config, profile, probe,
                                                                expected):
    defaults = {"config": _write(tmp_path / "base.yaml", config)}
    if profile:
        defaults["profile"] = profile
    host = parse_host_spec("root@127.0.0.1:22", defaults)
    assert profile_backends(host, probe) == expected


def test_config_change_makes_a_new_release_on_the_same_venv(tmp_path):
    a = _plan(tmp_path, "log: {level: info}\n")
    b = _plan(tmp_path, "log: {level: debug}\n")
    assert a.name != b.name and a.venv_key == b.venv_key


def test_dependency_change_makes_a_new_venv(tmp_path):
    a = _plan(tmp_path, "log: {level: info}\n", dep_text="dep-1")
    b = _plan(tmp_path, "log: {level: info}\n", dep_text="dep-2")
    assert a.venv_key != b.venv_key


@pytest.mark.parametrize("target,first,has", [
    (Target((3, 6), "x86_64", (2, 27), True), "manylinux_2_27_x86_64",
     ["manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"]),
    (Target((3, 11), "aarch64", (2, 36), False), "manylinux_2_36_aarch64",
     ["manylinux_2_17_aarch64", "manylinux2014_aarch64", "linux_aarch64"]),
])
def test_platform_tags_follow_the_device_glibc(target, first, has):
    tags = target.platforms()
    assert tags[0] == first and all(t in tags for t in has)
    assert not any("manylinux_2_16" in t for t in tags)


def test_markers_are_evaluated_for_the_device_python_not_this_one():
    lines = ['numpy', 'dataclasses; python_version < "3.7"',
             'typing_extensions; python_version < "3.8"', 'onnxruntime; extra == "onnx"',
             'tflite-runtime; python_version < "3.9" and extra == "tflite"']
    assert requirements_for(lines, Target((3, 6), "x86_64", (2, 27), True), ["onnx"]) == [
        "numpy", "dataclasses", "typing_extensions", "onnxruntime"]
    assert requirements_for(lines, Target((3, 11), "aarch64", (2, 36), False), ["tflite"]) == [
        "numpy"]


def _tiny_agent_wheel(folder):
    """An agent wheel whose only requirements are small (the resolver reads METADATA only)."""
    path = os.path.join(str(folder), "edgeagent-0.1.0-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("edgeagent-0.1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: edgeagent\nVersion: 0.1.0\n"
                   "Requires-Dist: six\n"
                   'Requires-Dist: dataclasses; python_version < "3.7"\n'
                   'Requires-Dist: tflite-runtime; python_version < "3.9" and extra == "tflite"\n'
                   'Requires-Dist: typing_extensions<=4.1.1; extra == "onnx"\n')
    return path


def test_wheelhouse_is_resolved_once_per_kind_of_device_and_then_cached(tmp_path):
    # given a resolver and a JetPack 4.6 device (Python 3.6, glibc 2.27)
    wheel = _tiny_agent_wheel(tmp_path)
    target = Target((3, 6), "x86_64", (2, 27), False)
    first = WheelhouseResolver(wheel, cache=str(tmp_path / "cache")).resolve(
        target, ("tflite", "onnxruntime"))
    # then TFLite (no wheel for 3.6 x86_64) was passed over for ONNX Runtime's extra
    assert first.backend == "onnxruntime" and not first.cached
    names = sorted(os.listdir(first.folder))
    assert "pip-21.3.1-py3-none-any.whl" in names
    assert any(n.startswith("dataclasses-0.8-") for n in names)
    assert any(n.startswith("typing_extensions-4.1.1-") for n in names)
    # when another deploy resolves the same kind of device with a pip that cannot run at all
    again = WheelhouseResolver(wheel, cache=str(tmp_path / "cache"), pip=["false"]).resolve(
        target, ("tflite", "onnxruntime"))
    # then the cached wheelhouse serves
    assert again.cached and again.folder == first.folder and again.extras == first.extras


def test_no_wheel_for_any_backend_is_one_clear_error(tmp_path):
    wheel = _tiny_agent_wheel(tmp_path)
    with pytest.raises(NoWheelError) as caught:
        WheelhouseResolver(wheel, cache=str(tmp_path / "cache")).resolve(
            Target((3, 6), "x86_64", (2, 27), False), ("tflite",))
    message = str(caught.value)
    assert "tflite-runtime" in message and "CPython 3.6 on linux x86_64" in message
    assert "\n" not in message
    # and the answer is remembered: the next deploy does not ask the index again
    with pytest.raises(NoWheelError):
        WheelhouseResolver(wheel, cache=str(tmp_path / "cache"), pip=["false"]).resolve(
            Target((3, 6), "x86_64", (2, 27), False), ("tflite",))


def _fake_venv(base, name, payload):
    lib = os.path.join(base, "venvs", name, "lib", "python3", "site-packages", "pkg")
    os.makedirs(lib)
    with open(os.path.join(lib, "core.so"), "wb") as f:
        f.write(payload)
    return os.path.join(lib, "core.so")


def test_installed_files_are_shared_between_venvs_through_hard_links(tmp_path):
    # given two venvs that installed the same dependency file
    p = remote_helper.paths(str(tmp_path))
    payload = os.urandom(64 * 1024)
    a = _fake_venv(p["base"], "a", payload)
    b = _fake_venv(p["base"], "b", payload)
    # when each is shared into the device store
    remote_helper.share_installed_files(p, os.path.join(p["base"], "venvs", "a"))
    remote_helper.share_installed_files(p, os.path.join(p["base"], "venvs", "b"))
    # then both are one file on disk
    assert os.stat(a).st_ino == os.stat(b).st_ino and os.stat(a).st_nlink == 3
    # and once no release links venv "a", it and nothing else goes
    os.makedirs(os.path.join(p["releases"], "r2"))
    os.symlink("../../venvs/b", os.path.join(p["releases"], "r2", "venv"))
    remote_helper.drop_unused_venvs(p, keep="b")
    assert not os.path.exists(os.path.join(p["base"], "venvs", "a"))
    with open(b, "rb") as f:
        assert f.read() == payload
    assert os.stat(b).st_nlink == 2
    # and a store file no venv uses any more is dropped
    shutil.rmtree(os.path.join(p["base"], "venvs", "b"))
    os.unlink(os.path.join(p["releases"], "r2", "venv"))
    os.makedirs(os.path.join(p["base"], "venvs", "c"))
    remote_helper.drop_unused_venvs(p, keep="c")
    assert os.listdir(os.path.join(p["base"], "store")) == []
