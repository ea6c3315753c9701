"""Device detection, fed with device trees recorded from each board (tests/data/devices/)."""

import json
import os
import platform

import pytest

from agent.board.device import DeviceInfo, detect_device, jetpack_for, parse_l4t_release

DEVICES = os.path.join(os.path.dirname(__file__), "data", "devices")

# board dir, machine, model, family, soc, L4T, JetPack, cpus, MemTotal MB
BOARDS = [
    ("jetson-nano", "aarch64", "NVIDIA Jetson Nano Developer Kit", "jetson", "tegra210",
     "R32.7.1", "4.6.1", 4, 3964),
    ("jetson-tx2", "aarch64", "quill", "jetson", "tegra186", "R32.6.1", "4.6", 6, 7849),
    ("jetson-xavier-nx", "aarch64", "NVIDIA Jetson Xavier NX Developer Kit", "jetson", "tegra194",
     "R35.3.1", "5.1.1", 6, 7583),
    ("jetson-agx-orin", "aarch64", "NVIDIA Jetson AGX Orin Developer Kit", "jetson", "tegra234",
     "R36.3.0", "6.0", 12, 62827),
    ("jetson-orin-nano", "aarch64", "NVIDIA Orin Nano Developer Kit", "jetson", "tegra234",
     "R35.3.1", "5.1.1", 6, 7441),
    ("raspberrypi-3", "armv7l", "Raspberry Pi 3 Model B Rev 1.2", "raspberrypi", "bcm2837",
     None, None, 4, 926),
    ("raspberrypi-4", "aarch64", "Raspberry Pi 4 Model B Rev 1.4", "raspberrypi", "bcm2711",
     None, None, 4, 7810),
    ("raspberrypi-5", "aarch64", "Raspberry Pi 5 Model B Rev 1.0", "raspberrypi", "bcm2712",
     None, None, 4, 8051),
    ("generic-x86_64", "x86_64", "Intel(R) Core(TM) i7-8700 CPU @ 3.20GHz", "generic", None,
     None, None, 4, 15923),
]


@pytest.mark.parametrize("board,machine,model,family,soc,l4t,jetpack,cpus,mem_mb", BOARDS,
                         ids=[b[0] for b in BOARDS])
def test_detect_device_with_recorded_board_files(board, machine, model, family, soc, l4t,
                                                 jetpack, cpus, mem_mb):
    # given: the files a board exposes, recorded under a root directory
    root = os.path.join(DEVICES, board)
    # when
    device = detect_device(root=root, machine=machine)
    # then
    assert device.model == model           # the device-tree NUL is gone
    assert device.family == family
    assert device.arch == machine
    assert device.soc == soc
    assert device.l4t_release == l4t
    assert device.jetpack == jetpack
    assert device.cpu_count == cpus
    assert device.mem_total_mb == mem_mb
    assert device.python == platform.python_version()


def test_compatible_list_is_split_on_nul_with_recorded_jetson_nano_files():
    device = detect_device(os.path.join(DEVICES, "jetson-nano"), machine="aarch64")
    assert device.compatible == ("nvidia,p3450-0000", "nvidia,jetson-nano", "nvidia,tegra210")


def test_pi_model_comes_from_cpuinfo_when_device_tree_is_hidden_with_recorded_rpi4_files(tmp_path):
    # given: a container that sees /proc/cpuinfo but no /proc/device-tree
    proc = tmp_path / "proc"
    proc.mkdir()
    with open(os.path.join(DEVICES, "raspberrypi-4", "proc", "cpuinfo")) as recorded:
        (proc / "cpuinfo").write_text(recorded.read())
    # when
    device = detect_device(str(tmp_path), machine="aarch64")
    # then
    assert device.model == "Raspberry Pi 4 Model B Rev 1.4"
    assert device.family == "raspberrypi"
    assert device.soc is None
    assert device.compatible == ()


def test_empty_root_gives_unknown_device_without_raising(tmp_path):
    # when: nothing at all can be read
    device = detect_device(str(tmp_path), machine="riscv64")
    # then
    assert device == DeviceInfo(model="unknown", family="generic", arch="riscv64", soc=None,
                                l4t_release=None, jetpack=None, cpu_count=None,
                                mem_total_mb=None, python=platform.python_version())


def test_machine_defaults_to_platform_machine(tmp_path):
    assert detect_device(str(tmp_path)).arch == platform.machine()


def test_to_json_is_serialisable_with_recorded_orin_nano_files():
    device = detect_device(os.path.join(DEVICES, "jetson-orin-nano"), machine="aarch64")
    data = json.loads(json.dumps(device.to_json()))
    assert data["model"] == "NVIDIA Orin Nano Developer Kit"
    assert data["jetpack"] == "5.1.1"
    assert data["compatible"][2] == "nvidia,p3767-0003"
    assert set(data) == {"model", "family", "arch", "soc", "l4t_release", "jetpack",
                         "cpu_count", "mem_total_mb", "python", "compatible"}


@pytest.mark.parametrize("text,release", [
    ("# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64", "R32.7.1"),
    ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64", "R36.4.3"),
    ("# R28 (release), REVISION: 2, GCID: 10567845, BOARD: t186ref, EABI: aarch64", "R28.2"),
    ("garbage", None),
    ("", None),
    (None, None),
])
def test_parse_l4t_release(text, release):
    assert parse_l4t_release(text) == release


@pytest.mark.parametrize("release,jetpack", [
    ("R32.6.1", "4.6"), ("R32.7.1", "4.6.1"), ("R32.7.6", "4.6.6"),
    ("R32.7.9", "4.6.x"),            # a revision the table has not heard of
    ("R35.1.0", "5.0.2"), ("R35.4.1", "5.1.2"), ("R35.9.9", "5.x"),
    ("R36.3.0", "6.0"), ("R36.4.3", "6.2"), ("R36.9.0", "6.x"),
    ("R32.3", None),                 # 'REVISION: 3' reads as 32.3.0, not in the table
    ("R28.2.1", None), (None, None),
])
def test_jetpack_for_l4t_release(release, jetpack):
    assert jetpack_for(release) == jetpack
