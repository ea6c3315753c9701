"""The HTTP endpoint under bad input: malformed requests get one line and a 4xx, and fuzzing it
crashes nothing, prints no traceback and keeps memory flat (docs/http.md)."""

import contextlib
import http.client
import os
import random
import socket

from http_helpers import agent, request  # noqa: F401 - agent is a fixture


def test_bad_requests_get_one_line_and_a_4xx(agent, sample_images_dir):
    port, proc, log_path = agent
    with open(os.path.join(sample_images_dir, "astronaut.jpg"), "rb") as handle:
        jpeg = handle.read()
    cases = [
        ("POST", "/infer", b"not an image", {}, 415),
        ("POST", "/infer", jpeg[:2000], {}, 400),
        ("POST", "/infer", b"x", {"Content-Length": str(10 ** 9)}, 413),
        ("GET", "/infer", None, {}, 405),
        ("GET", "/nope", None, {}, 404),
        ("POST", "/infer", b"\x89PNG\r\n\x1a\n" + b"\0\0\0\rIHDR" + b"\x00\x01\x00\x00" * 2, {},
         413),
    ]
    for method, path, body, headers, code in cases:
        status, _, answer = request(port, method, path, body, headers)
        assert status == code, (method, path, status, answer)
        assert answer.count(b"\n") == 1 and answer.endswith(b"\n"), answer
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    raw.sendall(b"POST /infer HTTP/1.0\r\n\r\n")
    assert raw.recv(100).startswith(b"HTTP/1.0 411")
    raw.close()
    assert proc.poll() is None


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def fuzz_once(port, rng, jpeg):
    kind = rng.randrange(7)
    if kind == 0:           # random bytes straight on the socket
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 600))))
        raw.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            raw.recv(4096)
        raw.close()
        return
    if kind == 1:           # a request line and headers cut short, then gone
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        raw.sendall(b"POST /infer HTTP/1.1\r\nContent-Length: 50000\r\n\r\n" + jpeg[:100])
        raw.close()
        return
    body = None
    if kind == 2:
        body = bytearray(jpeg)
        for _ in range(rng.randrange(1, 50)):
            body[rng.randrange(len(body))] = rng.getrandbits(8)
        body = bytes(body)
    elif kind == 3:
        body = jpeg[:rng.randrange(len(jpeg))]
    elif kind == 4:
        body = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 3000)))
    method = rng.choice(["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH"])
    path = rng.choice(["/infer", "/metrics", "/healthz", "/latest", "/snapshot.jpg", "/",
                       "/%2e%2e/etc/passwd", "/infer?x=" + "a" * 3000, "//", "/" + "x" * 70000])
    headers = {"Content-Type": rng.choice(["image/jpeg", "text/plain", "\u00e9\u00e9"])}
    try:
        request(port, method, path, body, headers, timeout=10)
    except (OSError, http.client.HTTPException):
        pass                # the server may close on hostile input: that is fine


def test_fuzzing_the_endpoint_no_crash_no_traceback_memory_flat(agent, sample_images_dir):
    port, proc, log_path = agent
    with open(os.path.join(sample_images_dir, "astronaut.jpg"), "rb") as handle:
        jpeg = handle.read()
    rng = random.Random(1312)
    for _ in range(400):    # warm up: allocator pools, caches, onnxruntime arenas
        fuzz_once(port, rng, jpeg)
    before = rss_kb(proc.pid)
    for _ in range(600):
        fuzz_once(port, rng, jpeg)
    after = rss_kb(proc.pid)
    assert proc.poll() is None
    assert request(port, "GET", "/healthz")[0] == 200
    log = open(log_path).read()
    assert "Traceback" not in log, log[-3000:]
    assert after - before < 20 * 1024, "RSS grew from %d to %d kB" % (before, after)
    metrics = request(port, "GET", "/metrics")[2].decode()
    assert 'code="500"' not in metrics and 'code="415"' in metrics and 'code="404"' in metrics
    print("fuzz: RSS %d -> %d kB" % (before, after))
