"""Import boundaries: the config reader runs without paho-mqtt (a device can validate its config
before the MQTT client is installed) and the workstation tools run without the inference stack.

Each case runs in a fresh interpreter whose meta-path finder refuses the named top-level
packages, so an eager import anywhere in the chain fails the test."""

import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

REFUSE = textwrap.dedent("""
    import sys

    class Refuse:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in REFUSED:
                raise ImportError("refused by the test: %s" % name)
            return None

    for name in list(sys.modules):
        if name.split(".")[0] in REFUSED:
            del sys.modules[name]
    sys.meta_path.insert(0, Refuse())
""")


def run_refusing(refused, body, tmp_path):
    script = "REFUSED = %r\n%s\n%s" % (tuple(refused), REFUSE, textwrap.dedent(body))
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run([sys.executable, "-c", script], cwd=str(tmp_path), env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          universal_newlines=True, timeout=120)


def test_the_refusing_finder_does_refuse(tmp_path):
    # given a finder refusing paho / when paho is imported / then the import fails
    done = run_refusing(["paho"], "import paho.mqtt.client", tmp_path)
    assert done.returncode != 0 and "refused by the test: paho" in done.stdout


def test_config_reader_loads_a_config_without_paho(tmp_path):
    # given a config file and no paho-mqtt
    (tmp_path / "config.yaml").write_text("device:\n  id: nano-01\nmqtt:\n  host: broker.lan\n")
    # when the config reader loads it
    done = run_refusing(["paho"], """
        import agent.config.agent_config as agent_config
        config = agent_config.load_config("config.yaml")
        print("loaded", config.device_id, config.mqtt.host)
        assert not any(name.split(".")[0] == "paho" for name in sys.modules)
    """, tmp_path)
    # then it loads and paho was never imported
    assert done.returncode == 0, done.stdout
    assert "loaded nano-01 broker.lan" in done.stdout


@pytest.mark.parametrize("module", ["agent.fleet.monitor", "agent.fleet.deploy.cli",
                                    "agent.fleet.ingest.rows"])
def test_workstation_modules_import_without_the_inference_stack(module, tmp_path):
    # given no numpy, cv2 or onnxruntime / when a workstation module is imported
    done = run_refusing(["numpy", "cv2", "onnxruntime"], "import %s\nprint('imported')" % module,
                        tmp_path)
    # then it imports
    assert done.returncode == 0, done.stdout
    assert "imported" in done.stdout
