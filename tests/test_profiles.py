"""Device profiles: the shipped YAML files, strict validation, and choosing one for a board."""

import logging
import os

import pytest
import yaml

from agent.board.device import DeviceInfo, detect_device
from agent.errors import ConfigError
from agent.config.profiles import (BACKEND_KEYS, ENV_VAR, list_profiles, load_profile,
                            profile_from_dict, select_profile)

DEVICES = os.path.join(os.path.dirname(__file__), "data", "devices")
SHIPPED = ["generic-aarch64", "generic-x86_64", "jetson-agx-orin", "jetson-agx-xavier",
           "jetson-nano", "jetson-orin-nano", "jetson-orin-nx", "jetson-tx2", "jetson-xavier-nx",
           "raspberrypi-3", "raspberrypi-4", "raspberrypi-5"]

# recorded board dir, machine -> profile, family, jetpack, reason
SELECTIONS = [
    ("jetson-nano", "aarch64", "jetson-nano", "jetson", "4.6.1",
     "model 'NVIDIA Jetson Nano Developer Kit' matches jetson-nano"),
    ("jetson-tx2", "aarch64", "jetson-tx2", "jetson", "4.6", "model 'quill' matches jetson-tx2"),
    ("jetson-xavier-nx", "aarch64", "jetson-xavier-nx", "jetson", "5.1.1",
     "model 'NVIDIA Jetson Xavier NX Developer Kit' matches jetson-xavier-nx"),
    ("jetson-agx-orin", "aarch64", "jetson-agx-orin", "jetson", "6.0",
     "model 'NVIDIA Jetson AGX Orin Developer Kit' matches jetson-agx-orin"),
    ("jetson-orin-nano", "aarch64", "jetson-orin-nano", "jetson", "5.1.1",
     "model 'NVIDIA Orin Nano Developer Kit' matches jetson-orin-nano"),
    ("raspberrypi-3", "armv7l", "raspberrypi-3", "raspberrypi", None,
     "model 'Raspberry Pi 3 Model B Rev 1.2' matches raspberrypi-3"),
    ("raspberrypi-4", "aarch64", "raspberrypi-4", "raspberrypi", None,
     "model 'Raspberry Pi 4 Model B Rev 1.4' matches raspberrypi-4"),
    ("raspberrypi-5", "aarch64", "raspberrypi-5", "raspberrypi", None,
     "model 'Raspberry Pi 5 Model B Rev 1.0' matches raspberrypi-5"),
    ("generic-x86_64", "x86_64", "generic-x86_64", "generic", None,
     "no board matched; generic-x86_64 by architecture"),
]


def _device(model="unknown", compatible=(), arch="aarch64", family="generic"):
    return DeviceInfo(model=model, family=family, arch=arch, soc=None, l4t_release=None,
                      jetpack=None, cpu_count=4, mem_total_mb=4096, python="3.6.9",
                      compatible=tuple(compatible))


@pytest.mark.parametrize("board,machine,profile,family,jetpack,reason", SELECTIONS,
                         ids=[s[0] for s in SELECTIONS])
def test_select_profile_with_recorded_board_files(board, machine, profile, family, jetpack,
                                                  reason, caplog):
    # given
    device = detect_device(os.path.join(DEVICES, board), machine=machine)
    # when
    with caplog.at_level(logging.WARNING):
        chosen, why = select_profile(device, env={})
    # then: one profile wins outright, no tie broken by name
    assert (chosen.name, device.family, device.jetpack, why) == (profile, family, jetpack, reason)
    assert not [r for r in caplog.records if "equally well" in r.getMessage()]


@pytest.mark.parametrize("compatible,profile,reason", [
    # Jetson TX1 (L4T 28): no model rule, its SoC picks the Nano profile.
    (["nvidia,jetson-cv", "nvidia,tegra210"], "jetson-nano", "compatible 'nvidia,tegra210'"),
    # JetPack 6 AGX Orin listing only the carrier+module entry.
    (["nvidia,p3737-0000+p3701-0000"], "jetson-agx-orin", "compatible 'nvidia,p3737-0000+p3701-0000'"),
    # Orin NX on the Orin Nano devkit carrier: the module number beats the shared tegra234.
    (["nvidia,p3768-0000+p3767-0000", "nvidia,p3767-0000", "nvidia,tegra234"], "jetson-orin-nx",
     "compatible 'nvidia,p3768-0000+p3767-0000'"),
    # An Orin whose module we do not know: the smallest Orin's settings are safe.
    (["acme,carrier", "nvidia,tegra234"], "jetson-orin-nano", "compatible 'nvidia,tegra234'"),
    (["nvidia,p2972-0000", "nvidia,galen", "nvidia,tegra194"], "jetson-agx-xavier",
     "compatible 'nvidia,p2972-0000'"),
    (["raspberrypi,model-zero-2-w", "brcm,bcm2837"], "raspberrypi-3",
     "compatible 'raspberrypi,model-zero-2-w'"),
])
def test_select_profile_by_compatible_when_model_is_unknown(compatible, profile, reason):
    chosen, why = select_profile(_device(model="custom carrier", compatible=compatible), env={})
    assert (chosen.name, why) == (profile, "%s matches %s" % (reason, profile))


def test_model_rule_beats_compatible_rule():
    # given: an Orin Nano devkit model string on a device tree that also says tegra234
    device = _device(model="NVIDIA Jetson Orin Nano Developer Kit",
                     compatible=["nvidia,p3768-0000+p3767-0005", "nvidia,tegra234"])
    chosen, why = select_profile(device, env={})
    assert chosen.name == "jetson-orin-nano"
    assert why.startswith("model ")


def test_env_override_beats_matching_with_recorded_jetson_nano_files():
    device = detect_device(os.path.join(DEVICES, "jetson-nano"), machine="aarch64")
    chosen, why = select_profile(device, env={ENV_VAR: "generic-aarch64"})
    assert (chosen.name, why) == ("generic-aarch64", "forced by EDGEAGENT_PROFILE")


def test_forced_profile_beats_env():
    chosen, why = select_profile(_device(), forced="raspberrypi-4", env={ENV_VAR: "jetson-nano"})
    assert (chosen.name, why) == ("raspberrypi-4", "forced by config/--profile")


def test_forced_unknown_profile_lists_the_available_ones():
    with pytest.raises(ConfigError) as caught:
        select_profile(_device(), forced="jetson-nanoo", env={})
    message = str(caught.value)
    assert "'jetson-nanoo' not found" in message
    for name in SHIPPED:
        assert name in message


def test_env_unknown_profile_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        select_profile(_device(), env={ENV_VAR: "pi9"})
    assert str(caught.value).startswith("config error: EDGEAGENT_PROFILE=pi9: device profile 'pi9'")
    assert "raspberrypi-5" in str(caught.value)


def test_no_matching_profile_is_a_config_error():
    with pytest.raises(ConfigError) as caught:
        select_profile(_device(model="VisionFive 2", arch="riscv64"), env={})
    assert "riscv64" in str(caught.value) and "EDGEAGENT_PROFILE" in str(caught.value)


def test_every_shipped_profile_is_listed_and_loads():
    assert list_profiles() == SHIPPED
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.name == name
        assert set(profile.backends) <= set(BACKEND_KEYS)
        assert profile.camera.width > 0 and profile.camera.fps > 0
        for key in profile.backends:
            assert profile.options(key)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_backend_order_follows_the_board_family(name):
    order = load_profile(name).backends
    if name.startswith("jetson"):
        assert order == ("tensorrt", "onnxruntime", "tflite")
    elif name.startswith("raspberrypi") or name == "generic-aarch64":
        assert order == ("tflite", "onnxruntime")
    else:
        assert order == ("onnxruntime", "tflite")


def test_options_fill_defaults_and_return_a_copy():
    profile = load_profile("jetson-nano")
    options = profile.options("onnxruntime")
    # the values jetson-nano.yaml sets, exactly; every other option at its table default (so a
    # new option needs no edit here)
    set_here = {"providers": ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                              "CPUExecutionProvider"], "threads": 4}
    from agent.backends.spec import defaults, option_specs
    expected = {k: list(v) if isinstance(v, tuple) else v
                for k, v in defaults(option_specs("onnxruntime")).items()}
    assert options == dict(expected, **set_here)
    options["providers"].append("Bogus")
    assert "Bogus" not in profile.options("onnxruntime")["providers"]
    assert profile.options("tensorrt") == {"precision": "fp16", "workspace_mb": 256,
                                           "dla_core": None, "build_on_start": True}


def test_options_of_an_unlisted_backend_are_its_defaults():
    assert load_profile("raspberrypi-4").options("tensorrt")["precision"] == "fp16"
    with pytest.raises(ValueError):
        load_profile("raspberrypi-4").options("openvino")


def test_backend_options_cannot_be_changed_in_place():
    profile = load_profile("jetson-nano")
    with pytest.raises(TypeError):
        profile.backend_options["tflite"]["threads"] = 1


def test_load_profile_by_path(tmp_path):
    path = _write(tmp_path, "lab-board", {})
    profile = load_profile(path)
    assert (profile.name, profile.path, profile.backends) == ("lab-board", path, ("tflite",))
    assert profile.thermal == (("cpu", ("cpu-thermal",)),)
    assert profile.gpu_load == ("/sys/devices/gpu.0/load",)


def _base(name):
    return {"name": name, "description": "a test board",
            "match": {"model": ["Test Board*"]},
            "backends": [{"tflite": {"threads": 2}}],
            "camera": {"default_source": "v4l2:///dev/video0", "width": 640, "height": 480, "fps": 15},
            "thermal": {"cpu": "cpu-thermal"}, "gpu_load": "/sys/devices/gpu.0/load",
            "throttled": False}


def _write(tmp_path, name, changes):
    data = _base(name)
    data.update(changes)
    path = str(tmp_path / (name + ".yaml"))
    with open(path, "w") as handle:
        yaml.safe_dump(data, handle)
    return path


@pytest.mark.parametrize("changes,expected", [
    ({"gpu": "yes"}, "bad.yaml: gpu: unknown key; allowed keys here: backends, camera"),
    ({"match": {"modle": ["x"]}}, "bad.yaml: match.modle: unknown key; allowed keys here: arch, compatible, model"),
    ({"match": {"model": [1]}}, "bad.yaml: match.model = [1]: must be a list of str"),
    ({"backends": ["cuda"]}, "bad.yaml: backends[0] = 'cuda': must be one of tensorrt, onnxruntime, tflite"),
    ({"backends": []}, "bad.yaml: backends = []: must be a non-empty list"),
    ({"backends": ["tflite", "tflite"]}, "bad.yaml: backends[1] = 'tflite': listed twice"),
    ({"backends": [{"tflite": {"threads": "four"}}]}, "bad.yaml: backends[0].tflite.threads = 'four': must be an integer"),
    ({"backends": [{"tflite": {"thread": 4}}]}, "bad.yaml: backends[0].tflite.thread: unknown key; allowed keys here: threads, xnnpack"),
    ({"backends": [{"tensorrt": {"precision": "fp8"}}]}, "bad.yaml: backends[0].tensorrt.precision = 'fp8': must be one of fp32, fp16, int8"),
    ({"backends": [{"tensorrt": {"dla_core": True}}]}, "bad.yaml: backends[0].tensorrt.dla_core = True: must be null (GPU only), 0 or 1"),
    ({"backends": [{"onnxruntime": {"providers": []}}]}, "bad.yaml: backends[0].onnxruntime.providers: must not be empty"),
    ({"backends": [{"tflite": {"threads": 2}, "onnxruntime": {}}]}, "bad.yaml: backends[0] = "),
    ({"camera": {"width": "720p"}}, "bad.yaml: camera.width = '720p': must be an integer"),
    ({"camera": {"fps": 0}}, "bad.yaml: camera.fps = 0: must be >= 1"),
    ({"thermal": ["cpu-thermal"]}, "bad.yaml: thermal = ['cpu-thermal']: must be a mapping"),
    ({"throttled": "yes"}, "bad.yaml: throttled = 'yes': must be true or false"),
    ({"name": "other"}, "bad.yaml: name = 'other': must equal the file name 'bad'"),
])
def test_bad_profile_is_a_config_error_naming_file_and_key(tmp_path, changes, expected):
    path = _write(tmp_path, "bad", changes)
    with pytest.raises(ConfigError) as caught:
        load_profile(path)
    assert expected in str(caught.value)
    assert str(caught.value).startswith("config error: " + str(tmp_path))


def test_missing_required_key_is_named(tmp_path):
    data = _base("bad")
    del data["backends"]
    with pytest.raises(ConfigError) as caught:
        profile_from_dict(data, "/etc/edgeagent/bad.yaml")
    assert "/etc/edgeagent/bad.yaml: backends: missing key" in str(caught.value)


def test_invalid_yaml_is_a_config_error_naming_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nbackends: [tflite\n")
    with pytest.raises(ConfigError) as caught:
        load_profile(str(path))
    assert str(path) + ": not valid YAML" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_profile_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="device profile file not found"):
        load_profile(str(tmp_path / "absent.yaml"))


def test_a_name_cannot_reach_outside_the_profile_folder():
    with pytest.raises(ConfigError, match="not found; available profiles"):
        load_profile("../device_profiles/jetson-nano")
