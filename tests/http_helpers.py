"""The agent with its HTTP endpoint on, for the HTTP tests: requests, waiting for /healthz, and
a module-wide running agent (fixture `agent`)."""

import contextlib
import http.client
import json
import os
import signal
import time

import pytest

from broker import free_port
from conftest import start_agent


def request(port, method, path, body=None, headers=None, timeout=30):
    """(status, headers, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def wait_http(port, proc, log_path, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, open(log_path).read()[-3000:]
        try:
            if request(port, "GET", "/healthz", timeout=2)[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("no healthy /healthz within %s s:\n%s" % (timeout_s,
                                                                   open(log_path).read()[-3000:]))


@contextlib.contextmanager
def http_agent(folder, images_dir, pipeline="face-detect", **http):
    """The agent looping over `images_dir` with the HTTP endpoint on a free port."""
    section = dict({"port": free_port(), "infer_per_s": 1000}, **http)
    config = os.path.join(str(folder), "config-%s.yaml" % pipeline)
    with open(config, "w") as handle:
        handle.write("mqtt: {enabled: false}\nstate_dir: %s\nbackend: onnxruntime\n"
                     "source: images://%s\ncamera: {loop: true}\npipeline: %s\nhttp: %s\n" % (
                         os.path.join(str(folder), "state"), images_dir, pipeline,
                         json.dumps(section)))
    log_path = os.path.join(str(folder), "agent-%s.log" % pipeline)
    proc = start_agent(["run", "--config", config], log_path)
    try:
        wait_http(section["port"], proc, log_path)
        yield section["port"], proc, log_path
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)


@pytest.fixture(scope="module")
def agent(tmp_path_factory, sample_images_dir):
    folder = tmp_path_factory.mktemp("http-agent")
    with http_agent(folder, sample_images_dir) as running:
        yield running
