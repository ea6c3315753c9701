"""The local HTTP endpoint on the real agent: /metrics linted by promtool and scraped by a real
Prometheus, /healthz, /latest, /snapshot.jpg, POST /infer against `--print` on the same photos,
/infer across a reload. Bad input and fuzzing: tests/test_http_bad_input.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import cv2
import numpy as np
import pytest

from broker import free_port
from conftest import ROOT, agent_env, run_agent
from http_helpers import agent, http_agent, request, wait_http  # noqa: F401 - agent: fixture

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
FAMILIES = ("edgeagent_frames_captured_total", "edgeagent_frames_processed_total",
            "edgeagent_frames_dropped_total", "edgeagent_stage_latency_seconds_bucket",
            "edgeagent_camera_reconnects_total", "edgeagent_camera_stalls_total",
            "edgeagent_outbox_pending_messages", "edgeagent_outbox_dropped_total",
            "edgeagent_outbox_rejected_total", "edgeagent_backend_info", "edgeagent_build_info")


def test_metrics_pass_promtool_and_carry_every_family(agent):
    port, _, _ = agent
    status, headers, body = request(port, "GET", "/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=")
    lint = subprocess.run([PROMTOOL, "check", "metrics"], input=body, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, timeout=30)
    assert lint.returncode == 0, lint.stdout.decode()
    text = body.decode()
    for family in FAMILIES:
        assert "\n" + family in text, family
    for stage in ("preprocess", "infer", "postprocess"):
        assert 'edgeagent_stage_latency_seconds_count{stage="%s"}' % stage in text
    assert 'edgeagent_backend_info{device="cpu",name="onnxruntime"' in text


def test_a_real_prometheus_scrapes_the_agent(agent, tmp_path):
    port, _, _ = agent
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text("global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n"
                      "  - job_name: edgeagent\n    static_configs: [{targets: ['127.0.0.1:%d']}]\n"
                      % port)
    log = open(str(tmp_path / "prometheus.log"), "wb")
    prometheus = subprocess.Popen([PROMETHEUS, "--config.file=%s" % config,
                                   "--storage.tsdb.path=%s" % (tmp_path / "data"),
                                   "--web.listen-address=127.0.0.1:%d" % web],
                                  stdout=log, stderr=subprocess.STDOUT)
    log.close()
    try:
        def query(expr):
            url = "http://127.0.0.1:%d/api/v1/query?query=%s" % (web, urllib.request.quote(expr))
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read().decode())["data"]["result"]

        deadline, found = time.monotonic() + 60, None
        while time.monotonic() < deadline and not found:
            assert prometheus.poll() is None, (tmp_path / "prometheus.log").read_text()[-2000:]
            try:
                found = query('edgeagent_frames_processed_total{job="edgeagent"} > 0') and \
                    query('up{job="edgeagent"} == 1')
            except OSError:
                pass
            time.sleep(0.5)
        assert found, (tmp_path / "prometheus.log").read_text()[-2000:]
        assert query('histogram_quantile(0.5, edgeagent_stage_latency_seconds_bucket'
                     '{stage="infer"}) > 0')
    finally:
        prometheus.terminate()
        prometheus.wait(30)


def test_healthz_latest_and_snapshot(agent):
    port, _, _ = agent
    status, _, body = request(port, "GET", "/healthz")
    health = json.loads(body.decode())
    assert status == 200 and health["ok"] and health["state"] == "running"
    status, headers, body = request(port, "GET", "/latest")
    latest = json.loads(body.decode())
    assert status == 200 and latest["seq"] >= 1 and latest["detections"][0]["label"] == "face"
    status, headers, body = request(port, "GET", "/snapshot.jpg")
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None and image.ndim == 3


def assert_same_result(answer, printed, name):
    """Same pipeline, model, backend, frame size, labels and classes; scores and boxes equal up
    to the payload's rounding (4 decimals, 0.1 px) flipping on a last float bit."""
    for key in ("pipeline", "model", "backend", "frame"):
        expected = printed[key] if key != "frame" else {k: printed["frame"][k]
                                                         for k in ("width", "height")}
        got = answer[key] if key != "frame" else {k: answer["frame"][k]
                                                   for k in ("width", "height")}
        assert got == expected, (name, key)
    kind = "detections" if "detections" in printed else "classifications"
    assert [(d["label"], d["class_id"]) for d in answer[kind]] == \
        [(d["label"], d["class_id"]) for d in printed[kind]], name
    for got, expected in zip(answer[kind], printed[kind]):
        assert got["score"] == pytest.approx(expected["score"], abs=2e-4), name
        if "box" in expected:
            assert got["box"] == pytest.approx(expected["box"], abs=0.2), name


@pytest.mark.parametrize("pipeline", ["face-detect", "classify-imagenet"])
def test_infer_on_real_photos_matches_print_on_the_same_photos(tmp_path, sample_images_dir,
                                                              pipeline):
    # given what `run --print` reports for each photo (sorted by name: frame index order)
    names = sorted(n for n in os.listdir(sample_images_dir) if n.endswith(".jpg"))
    printed = run_agent(["run", "--no-mqtt", "--print", "--pipeline", pipeline, "--backend",
                         "onnxruntime", "--source", "images://%s" % sample_images_dir,
                         "--state-dir", str(tmp_path / "print-state")], timeout_s=300)
    assert printed.returncode == 0, printed.stderr
    by_name = {names[p["frame"]["index"]]: p for p in printed.json_lines()}
    assert by_name, printed.stderr
    # when each photo is posted to /infer of an agent running the same pipeline on its camera
    with http_agent(tmp_path, sample_images_dir, pipeline) as (port, _, _):
        for name in names:
            with open(os.path.join(sample_images_dir, name), "rb") as handle:
                status, _, body = request(port, "POST", "/infer", handle.read(),
                                          {"Content-Type": "image/jpeg"})
            assert status == 200, body
            answer = json.loads(body.decode())
            # then the result is the one --print gave (no result: nothing detected)
            if name in by_name:
                assert_same_result(answer, by_name[name], name)
            else:
                assert answer["detections"] == [], name
    if pipeline == "face-detect":
        assert "astronaut.jpg" in by_name


def test_http_off_never_imports_prometheus_client():
    code = ("import sys, agent.daemon.service, agent.cli\n"
            "from agent.config.agent_config import config_from_dict\n"
            "from agent.outputs.dashboards import Dashboards\n"
            "class O: publisher = None\n"
            "Dashboards(config_from_dict({}, 'x'), O(), None, None).start()\n"
            "print('prometheus_client' in sys.modules, 'agent.outputs.http_api' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=agent_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert out.stdout.decode().split() == ["False", "False"], out.stderr.decode()


def test_infer_keeps_working_across_a_reload(tmp_path, sample_images_dir):
    with open(os.path.join(sample_images_dir, "astronaut.jpg"), "rb") as handle:
        jpeg = handle.read()
    with http_agent(tmp_path, sample_images_dir) as (port, proc, log_path):
        assert request(port, "POST", "/infer", jpeg)[0] == 200
        # when the agent reloads (SIGHUP): backend closed, a new one loaded
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 60
        while open(log_path).read().count("running face-detect on") < 2:
            assert time.monotonic() < deadline and proc.poll() is None, open(log_path).read()
            time.sleep(0.1)
        # then /infer answers from the new backend, with the same result
        status, _, body = request(port, "POST", "/infer", jpeg)
        assert status == 200, body
        assert json.loads(body.decode())["detections"][0]["label"] == "face"
        wait_http(port, proc, log_path)
        assert "Traceback" not in open(log_path).read()
