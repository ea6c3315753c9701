"""The local HTTP endpoint (config `http:`; docs/http.md): GET /metrics, /healthz, /latest,
/snapshot.jpg and POST /infer.

Standard library only (socketserver.ThreadingMixIn + HTTPServer: ThreadingHTTPServer is 3.7+).
Every request ends in a status line and, for errors, one line of text: a bad request never
reaches a traceback, a slow or hostile client cannot hold more than MAX_CLIENTS threads nor send
more than max_body_bytes, and /infer is rate-limited (token bucket) on top."""

import logging
import socket
import socketserver
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Dict, Optional, Tuple

log = logging.getLogger(__name__)

MAX_CLIENTS = 16            # concurrent connections; more get closed at once
CLIENT_TIMEOUT_S = 10.0     # a client that stops sending mid-request is dropped
MAX_PIXELS = 40 * 1000 * 1000
LOOPBACK = ("127.0.0.1", "::1", "localhost")


class ApiError(Exception):
    """An HTTP error with its one-line explanation."""

    def __init__(self, code: int, message: str, headers: Optional[Dict[str, str]] = None):
        Exception.__init__(self, message)
        self.code = code
        self.headers = headers or {}


def reply(code: int, body: bytes, content_type: str = "application/json",
          headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes, str, Dict[str, str]]:
    return code, body, content_type, headers or {}


class TokenBucket:
    """`rate` requests per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """0 when a token was taken, else the seconds until one is available."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
            self._at = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return 0.0
            return (1.0 - self._tokens) / self.rate


def image_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG, JPEG or BMP header, None when it is none of them. Read before
    decoding, so a tiny file that claims a huge picture never gets memory for it."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"BM" and len(data) >= 26:
        width, height = struct.unpack("<ii", data[18:26])
        return abs(width), abs(height)
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        i += 2 + length
    return None


class _Handler(BaseHTTPRequestHandler):
    server_version = "edgeagent"
    sys_version = ""
    protocol_version = "HTTP/1.0"       # one request per connection: nothing to keep alive
    timeout = CLIENT_TIMEOUT_S

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def do_POST(self) -> None:
        self._serve("POST")

    def _serve(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        app = self.server.app
        try:
            code, body, content_type, headers = app.handle(method, path, self._body)
        except ApiError as error:
            code, body, content_type, headers = (error.code, (str(error) + "\n").encode("utf-8"),
                                                 "text/plain; charset=utf-8", error.headers)
        except Exception as error:  # a bug in one endpoint: one log line, a 500, server lives
            log.error("http: %s %s failed: %s: %s", method, path[:100], type(error).__name__,
                      error)
            code, body, content_type, headers = (500, b"internal error\n",
                                                 "text/plain; charset=utf-8", {})
        app.count(path, code)
        try:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(body)
        except (OSError, socket.timeout):
            pass            # the client went away: nothing to tell it

    def _body(self, limit: int) -> bytes:
        length = self.headers.get("Content-Length")
        if length is None:
            raise ApiError(411, "Content-Length is required")
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, "Content-Length %r is not a number" % length[:40])
        if size < 0:
            raise ApiError(400, "Content-Length must not be negative")
        if size > limit:
            self.close_connection = True
            raise ApiError(413, "body of %d bytes is over the %d byte limit (http.max_body_bytes)"
                           % (size, limit))
        chunks, left = [], size
        while left > 0:
            chunk = self.rfile.read(min(left, 65536))
            if not chunk:
                raise ApiError(400, "body ended after %d of %d bytes" % (size - left, size))
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)

    def send_error(self, code, message=None, explain=None) -> None:
        """Malformed request lines and unknown methods: a short plain answer, no HTML page."""
        try:
            body = ("%d %s\n" % (code, message or self.responses.get(code, ("",))[0])).encode(
                "latin-1", "replace")
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            if self.command != "HEAD" and code >= 200 and code not in (204, 304):
                self.wfile.write(body)
        except (OSError, socket.timeout):
            pass
        self.close_connection = True

    def log_message(self, fmt: str, *args) -> None:
        log.debug("http: %s " + fmt, self.address_string(), *args)


class HttpServer(socketserver.ThreadingMixIn, HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: str, port: int, app) -> None:
        self.app = app
        self._slots = threading.BoundedSemaphore(MAX_CLIENTS)
        if ":" in address:
            self.address_family = socket.AF_INET6
        HTTPServer.__init__(self, (address, port), _Handler)
        self._thread = None     # type: Optional[threading.Thread]

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start(self) -> "HttpServer":
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    def process_request(self, request, client_address) -> None:
        if not self._slots.acquire(blocking=False):
            log.debug("http: %d clients busy; closing a new connection", MAX_CLIENTS)
            self.shutdown_request(request)
            return
        socketserver.ThreadingMixIn.process_request(self, request, client_address)

    def process_request_thread(self, request, client_address) -> None:
        try:
            socketserver.ThreadingMixIn.process_request_thread(self, request, client_address)
        finally:
            self._slots.release()

    def handle_error(self, request, client_address) -> None:
        """socketserver would print a traceback on stderr; a broken client is one debug line."""
        log.debug("http: client %s: %s", client_address[0] if client_address else "?",
                  sys.exc_info()[1])


def start_server(address: str, port: int, app) -> HttpServer:
    server = HttpServer(address, port, app).start()
    if address in LOOPBACK:
        log.info("http: serving on http://%s:%d (loopback only)", address, server.port)
    else:
        log.warning("http: serving on %s:%d, reachable from other hosts: /infer and /snapshot.jpg "
                    "are open to anyone who can reach this address (no authentication)",
                    address, server.port)
    return server
