"""System sensors, read from /proc and /sys trees recorded on each board (tests/data/devices/)."""

import logging
import os
import shutil
import stat
import subprocess

import pytest

from agent.board import sensors
from agent.config.profiles import load_profile
from agent.board.sensors import (CpuMeter, SystemSensors, parse_throttled, read_gpu_load, read_system,
                           read_temperatures, read_throttled, run_command)

DEVICES = os.path.join(os.path.dirname(__file__), "data", "devices")
NOT_THROTTLED = dict(raw="0x0", under_voltage_now=False, freq_capped_now=False,
                     throttled_now=False, soft_temp_limit_now=False, under_voltage_occurred=False,
                     freq_capped_occurred=False, throttled_occurred=False,
                     soft_temp_limit_occurred=False)

# recorded board dir -> the `system` dict its shipped profile reads (no CPU meter given)
SYSTEMS = [
    ("jetson-nano", {"mem_used_mb": 1317, "mem_total_mb": 3964,
                     "temps_c": {"cpu": 36.5, "gpu": 34.5}, "gpu_load": 31.2}),
    ("jetson-tx2", {"mem_used_mb": 1482, "mem_total_mb": 7849,
                    "temps_c": {"cpu": 37.5, "gpu": 35.5, "board": 32.0}, "gpu_load": 0.0}),
    # JetPack 5 Xavier: the load file is the third candidate in the profile.
    ("jetson-xavier-nx", {"mem_used_mb": 1840, "mem_total_mb": 7583,
                          "temps_c": {"cpu": 41.5, "gpu": 40.0, "aux": 39.5}, "gpu_load": 5.7}),
    # gpu-thermal reads -256 C (rail-gated GPU): left out rather than reported.
    ("jetson-agx-orin", {"mem_used_mb": 3343, "mem_total_mb": 62827,
                         "temps_c": {"cpu": 47.4, "tj": 47.4}, "gpu_load": 99.8}),
    ("jetson-orin-nano", {"mem_used_mb": 1571, "mem_total_mb": 7441,
                          "temps_c": {"cpu": 43.3, "gpu": 42.6, "tj": 43.3}, "gpu_load": 12.5}),
    ("raspberrypi-3", {"mem_used_mb": 195, "mem_total_mb": 926, "temps_c": {"cpu": 48.3},
                       "throttled": NOT_THROTTLED}),
    ("raspberrypi-4", {"mem_used_mb": 473, "mem_total_mb": 7810, "temps_c": {"cpu": 51.1},
                       "throttled": NOT_THROTTLED}),
    ("raspberrypi-5", {"mem_used_mb": 414, "mem_total_mb": 8051, "temps_c": {"cpu": 55.5},
                       "throttled": NOT_THROTTLED}),
    # No thermal mapping in the profile: every zone under its type, duplicates numbered.
    ("generic-x86_64", {"mem_used_mb": 3351, "mem_total_mb": 15923,
                        "temps_c": {"acpitz": 27.8, "acpitz.1": 29.8, "x86_pkg_temp": 38.0}}),
]


class RecordingVcgencmd:
    """Stands in for `vcgencmd`: records each call, answers with a fixed line."""

    def __init__(self, answer="throttled=0x0\n", error=None):
        self.answer = answer
        self.error = error
        self.calls = []

    def __call__(self, argv, timeout):
        self.calls.append((list(argv), timeout))
        if self.error is not None:
            raise self.error
        return self.answer


@pytest.fixture(autouse=True)
def fresh_debug_log(monkeypatch):
    # "logged once" is per process; each test starts with nothing logged yet.
    monkeypatch.setattr(sensors, "_logged", set())


@pytest.mark.parametrize("board,expected", SYSTEMS, ids=[s[0] for s in SYSTEMS])
def test_read_system_with_recorded_board_files(board, expected):
    # given: the board's shipped profile and its recorded /proc and /sys
    profile = load_profile(board)
    vcgencmd = RecordingVcgencmd()
    # when
    system = read_system(profile.thermal, profile.gpu_load, profile.throttled,
                         root=os.path.join(DEVICES, board), runner=vcgencmd)
    # then
    assert system == expected
    assert vcgencmd.calls == ([(["vcgencmd", "get_throttled"], 2.0)] if profile.throttled else [])


def test_missing_files_leave_fields_out_without_raising(tmp_path):
    profile = load_profile("jetson-nano")
    vcgencmd = RecordingVcgencmd(error=FileNotFoundError("vcgencmd"))
    system = read_system(profile.thermal, profile.gpu_load, throttled=True, root=str(tmp_path),
                         cpu_meter=CpuMeter(str(tmp_path)), runner=vcgencmd)
    assert system == {}
    assert len(vcgencmd.calls) == 1


def test_garbled_files_leave_fields_out_with_recorded_jetson_nano_files(tmp_path):
    # given: the Nano tree with a CPU zone that reads garbage and a truncated meminfo
    root = str(tmp_path / "nano")
    shutil.copytree(os.path.join(DEVICES, "jetson-nano"), root)
    with open(os.path.join(root, "sys/class/thermal/thermal_zone1/temp"), "w") as handle:
        handle.write("N/A\n")
    with open(os.path.join(root, "proc/meminfo"), "w") as handle:
        handle.write("MemFree: 12 kB\n")
    with open(os.path.join(root, "sys/devices/gpu.0/load"), "w") as handle:
        handle.write("")
    # when
    profile = load_profile("jetson-nano")
    system = read_system(profile.thermal, profile.gpu_load, root=root)
    # then: only the GPU zone survives
    assert system == {"temps_c": {"gpu": 34.5}}


def test_failures_are_logged_once_at_debug(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="agent.board.sensors"):
        for _ in range(3):
            assert read_gpu_load(["/sys/devices/gpu.0/load"], root=str(tmp_path)) is None
    assert len([r for r in caplog.records if "no GPU load file" in r.getMessage()]) == 1
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


@pytest.mark.parametrize("before,after,percent", [
    ("cpu  100 0 100 800 0 0 0 0 0 0", "cpu  150 0 150 850 50 0 0 0 0 0", 50.0),
    ("cpu  100 0 100 800 0 0 0 0 0 0", "cpu  100 0 100 900 0 0 0 0 0 0", 0.0),
    ("cpu  100 0 100 800 0 0 0 0 0 0", "cpu  190 5 105 800 0 0 0 0 0 0", 100.0),
    # guest time is already inside user time; counting it twice would inflate the load
    ("cpu  100 0 0 900 0 0 0 0 0 0", "cpu  200 0 0 1000 0 0 0 0 100 0", 50.0),
    ("cpu  10 0 0 10 0 0 0 0", "cpu  12 1 0 17 0 0 0 0", 30.0),
])
def test_cpu_meter_percent_between_calls(tmp_path, before, after, percent):
    (tmp_path / "proc").mkdir()
    stat_file = tmp_path / "proc" / "stat"
    meter = CpuMeter(str(tmp_path))
    stat_file.write_text(before + "\ncpu0 1 2 3 4\n")
    assert meter.percent() is None             # no interval yet
    stat_file.write_text(after + "\ncpu0 1 2 3 4\n")
    assert meter.percent() == percent


def test_cpu_meter_without_elapsed_time_gives_none_with_recorded_jetson_nano_files():
    meter = CpuMeter(os.path.join(DEVICES, "jetson-nano"))
    assert meter.percent() is None
    assert meter.percent() is None             # same counters: no time has passed


def test_system_sensors_from_profile_report_cpu_between_reads_with_recorded_nano_files(tmp_path):
    # given
    root = str(tmp_path / "nano")
    shutil.copytree(os.path.join(DEVICES, "jetson-nano"), root)
    stat_path = os.path.join(root, "proc", "stat")
    sensors_ = SystemSensors.from_profile(load_profile("jetson-nano"), root=root)
    with open(stat_path, "w") as handle:      # 100 jiffies later, 25 of them busy
        handle.write("cpu  4725 356 589 3699251 23 23 0 0 0 0\n")
    # when
    system = sensors_.read()
    # then
    assert system["cpu_percent"] == 25.0
    assert system["gpu_load"] == 31.2


@pytest.mark.parametrize("line,flags", [
    ("throttled=0x0", set()),
    ("throttled=0x50005", {"under_voltage_now", "throttled_now", "under_voltage_occurred",
                           "throttled_occurred"}),
    ("throttled=0x80008\n", {"soft_temp_limit_now", "soft_temp_limit_occurred"}),
    ("throttled=0xE000F", {"under_voltage_now", "freq_capped_now", "throttled_now",
                           "soft_temp_limit_now", "freq_capped_occurred", "throttled_occurred",
                           "soft_temp_limit_occurred"}),
    ("throttled=0x20000", {"freq_capped_occurred"}),
])
def test_parse_throttled_flags(line, flags):
    parsed = parse_throttled(line)
    assert parsed["raw"] == line.strip().split("=")[1]
    assert {name for name, value in parsed.items() if value is True} == flags
    assert len(parsed) == 9


def test_read_throttled_with_recording_fake_vcgencmd():
    vcgencmd = RecordingVcgencmd("throttled=0x50005\n")
    flags = read_throttled(vcgencmd)
    assert flags["under_voltage_now"] is True and flags["freq_capped_now"] is False
    assert vcgencmd.calls == [(["vcgencmd", "get_throttled"], 2.0)]


@pytest.mark.parametrize("error,answer", [
    (subprocess.TimeoutExpired(["vcgencmd"], 2.0), None),
    (subprocess.CalledProcessError(255, ["vcgencmd"]), None),
    (PermissionError("/dev/vchiq"), None),
    (None, "VCHI initialization failed\n"),
])
def test_read_throttled_failures_give_none(error, answer):
    assert read_throttled(RecordingVcgencmd(answer=answer, error=error)) is None


def _fake_tool(folder, name, script):
    path = folder / name
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(folder)


def test_default_runner_runs_a_fake_vcgencmd_executable_on_path(tmp_path, monkeypatch):
    folder = _fake_tool(tmp_path, "vcgencmd", 'test "$1" = get_throttled && echo throttled=0x50000')
    monkeypatch.setenv("PATH", folder + os.pathsep + os.environ["PATH"])
    flags = read_throttled()
    assert flags["raw"] == "0x50000" and flags["under_voltage_occurred"] is True
    assert flags["under_voltage_now"] is False


def test_run_command_kills_a_hung_tool(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_tool(tmp_path, "hangs", "exec sleep 30") + os.pathsep
                       + os.environ["PATH"])
    with pytest.raises(subprocess.TimeoutExpired):
        run_command(["hangs"], 0.2)


def test_run_command_reports_missing_and_failing_tools(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", _fake_tool(tmp_path, "fails", "exit 3") + os.pathsep
                       + os.environ["PATH"])
    with pytest.raises(subprocess.CalledProcessError):
        run_command(["fails"], 2.0)
    with pytest.raises(OSError, match="not installed"):
        run_command(["edgeagent-no-such-tool"], 2.0)


def test_read_temperatures_renames_only_the_asked_zones_with_recorded_tx2_files():
    temps = read_temperatures((("soc", ("tdiode_TEGRA",)), ("fan", ("no-such-zone",))),
                              root=os.path.join(DEVICES, "jetson-tx2"))
    assert temps == {"soc": 34.2}           # zone types match case-insensitively
