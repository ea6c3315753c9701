"""The HTTP endpoint's parts in process: rate limit, /healthz turning 503 when frames stop,
image header checks, the loopback default and the log line for any other address."""

import http.client
import json
import logging

import cv2
import numpy as np
import pytest

from agent.config.dashboards_config import HttpSettings
from agent.outputs.http_api import TokenBucket, image_size, start_server
from agent.outputs.http_endpoints import HttpApp, LatestResult
from agent.outputs.metrics import Metrics, MetricSources
from agent.stats import PipelineStats


class Clock:
    def __init__(self, now=100.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.mark.parametrize("rate, burst, gaps, expected", [
    (1.0, 2.0, [0, 0, 0], [True, True, False]),
    (1.0, 2.0, [0, 0, 1.0], [True, True, True]),
    (10.0, 1.0, [0, 0.05, 0.1], [True, False, True]),
    (0.5, 1.0, [0, 1.0, 1.0], [True, False, True]),
])
def test_token_bucket(rate, burst, gaps, expected):
    clock = Clock()
    bucket = TokenBucket(rate, burst, clock)
    taken = []
    for gap in gaps:
        clock.now += gap
        taken.append(bucket.take() == 0.0)
    assert taken == expected


def encoded(ext, width, height):
    return cv2.imencode(ext, np.zeros((height, width, 3), np.uint8))[1].tobytes()


@pytest.mark.parametrize("data, expected", [
    (encoded(".jpg", 64, 48), (64, 48)),
    (encoded(".png", 33, 17), (33, 17)),
    (encoded(".bmp", 5, 7), (5, 7)),
    (b"GIF89a....", None),
    (b"\xff\xd8\xff", None),
    (b"", None),
])
def test_image_size_from_headers(data, expected):
    assert image_size(data) == expected


class FakeInfer:
    def __call__(self, image):
        return json.dumps({"shape": list(image.shape)}).encode()


def make_app(clock, **settings):
    stats = PipelineStats(clock=clock)
    app = HttpApp(HttpSettings(enabled=True, **settings), Metrics(MetricSources(stats)),
                  LatestResult(), stats, lambda: None, clock)
    app.infer = FakeInfer()
    return app, stats


def get(port, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def test_healthz_is_200_while_frames_flow_and_503_when_they_stop():
    clock = Clock()
    app, stats = make_app(clock, healthy_within_s=5.0)
    server = start_server("127.0.0.1", 0, app)
    try:
        assert get(server.port, "GET", "/healthz")[0] == 503          # no frame yet
        stats.count_processed({"infer": 1.0})
        clock.now += 4.0
        status, _, body = get(server.port, "GET", "/healthz")
        assert status == 200 and json.loads(body.decode())["last_frame_age_s"] == 4.0
        clock.now += 2.0
        assert get(server.port, "GET", "/healthz")[0] == 503          # frames stopped
        assert get(server.port, "GET", "/snapshot.jpg")[0] == 503
        assert get(server.port, "GET", "/latest")[0] == 404
    finally:
        server.stop()


def test_infer_is_rate_limited_with_retry_after():
    clock = Clock()
    app, _ = make_app(clock, infer_per_s=1.0)
    server = start_server("127.0.0.1", 0, app)
    jpeg = encoded(".jpg", 32, 24)
    try:
        codes = [get(server.port, "POST", "/infer", jpeg)[0] for _ in range(3)]
        assert codes == [200, 200, 429]                               # burst of 2 s
        status, headers, body = get(server.port, "POST", "/infer", jpeg)
        assert status == 429 and headers["Retry-After"] == "1" and body.count(b"\n") == 1
        clock.now += 1.0
        status, _, body = get(server.port, "POST", "/infer", jpeg)
        assert status == 200 and json.loads(body.decode()) == {"shape": [24, 32, 3]}
    finally:
        server.stop()


@pytest.mark.parametrize("address, level, words", [
    ("127.0.0.1", logging.INFO, "loopback only"),
    ("0.0.0.0", logging.WARNING, "reachable from other hosts"),
])
def test_loopback_by_default_and_any_other_address_is_logged(caplog, address, level, words):
    assert HttpSettings().address == "127.0.0.1"
    app, _ = make_app(Clock())
    with caplog.at_level(logging.INFO, logger="agent.outputs.http_api"):
        server = start_server(address, 0, app)
        server.stop()
    assert [r for r in caplog.records if r.levelno == level and words in r.getMessage()]
