"""What the HTTP endpoint answers (agent/outputs/http_api.py serves it): routes, /infer through the
pipeline's own backend, the latest result payload.

/infer runs between camera frames on the backend the pipeline already loaded: SerialBackend
puts one lock around every backend.infer (camera or HTTP), so no model is loaded twice and no
backend is entered by two threads at once."""

import json
import threading
import time
from typing import Callable, Optional

import numpy as np

from .. import __version__
from ..config.dashboards_config import HttpSettings
from .http_api import MAX_PIXELS, ApiError, TokenBucket, image_size, reply
from ..inference import Inference
from ..processing.decoders import build_decoder
from ..processing.preprocess import Preprocessor
from ..wire import RESULT_SCHEMA, frame_result_body, to_json_bytes
from .snapshot import annotate, encode_jpeg

TEXT = "text/plain; charset=utf-8"
ROUTES = {"/metrics": ("GET", "HEAD"), "/healthz": ("GET", "HEAD"), "/latest": ("GET", "HEAD"),
          "/snapshot.jpg": ("GET", "HEAD"), "/infer": ("POST",), "/": ("GET", "HEAD")}


class SerialBackend:
    """A backend shared by the pipeline and /infer: one infer() at a time; closed means closed."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._closed = False

    def infer(self, tensor):
        with self._lock:
            if self._closed:
                raise ApiError(503, "the pipeline is reloading; try again")
            return self._backend.infer(tensor)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            close = getattr(self._backend, "close", None)
            if close is not None:
                close()

    def __getattr__(self, name: str):
        return getattr(self._backend, name)


class LatestResult:
    """The last result payload the pipeline stored (GET /latest)."""

    def __init__(self) -> None:
        self.payload = None      # type: Optional[bytes]

    def wrap(self, sink: Callable) -> Callable:
        def remembering(make_payload):
            def make(seq: int) -> bytes:
                data = make_payload(seq)
                self.payload = data
                return data
            return sink(make)
        return remembering


class InferEndpoint:
    """An image in, the pipeline's result payload out (no seq: it is not a stored result)."""

    def __init__(self, plan, backend, device_id: str) -> None:
        spec = plan.pipeline
        preprocessor = Preprocessor(spec.preprocess, backend.input_spec, spec.input_size)
        decoder = build_decoder(spec.decoder, spec.path, preprocessor.tensor_spec,
                                backend.output_specs)
        self._inference = Inference([preprocessor], backend, decoder, spec.labels)
        self._lock = threading.Lock()       # one preprocessor tensor: one request at a time
        self._base = {"schema": RESULT_SCHEMA, "device_id": device_id, "pipeline": spec.name,
                      "model": spec.model_name, "backend": backend.name, "source": "http"}

    def __call__(self, image: np.ndarray) -> bytes:
        from ..sources.live import make_frame
        frame = make_frame(image, 0)
        with self._lock:
            result = self._inference(frame)
        body = frame_result_body(result)   # the same payload body the results topic gets
        body.setdefault("detections" if result.classifications is None else "classifications", [])
        return to_json_bytes(dict(self._base, **body))


def decode_image(data: bytes) -> np.ndarray:
    import cv2
    size = image_size(data)
    if size is None:
        raise ApiError(415, "body is not a JPEG, PNG or BMP image")
    if size[0] * size[1] > MAX_PIXELS or 0 in size:
        raise ApiError(413, "image of %dx%d pixels is over the %d pixel limit" % (
            size[0], size[1], MAX_PIXELS))
    if not _complete(data):
        raise ApiError(400, "image is truncated (no end marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ApiError(400, "image cannot be decoded (truncated or corrupt)")
    return image


def _complete(data: bytes) -> bool:
    """JPEG and PNG end with a marker; some OpenCV releases decode a cut file as half grey."""
    if data[:2] == b"\xff\xd8":
        return data.rstrip(b"\x00\r\n ")[-2:] == b"\xff\xd9"
    if data[:4] == b"\x89PNG":
        return b"IEND" in data[-16:]
    return True


class HttpApp:
    def __init__(self, settings: HttpSettings, metrics, latest: LatestResult, stats,
                 latest_frame: Callable, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.metrics = metrics
        self.latest = latest
        self.stats = stats
        self.health = None              # the HealthMonitor, once the pipeline runs
        self.infer = None               # type: Optional[InferEndpoint]
        self._latest_frame = latest_frame
        self._clock = clock
        self._bucket = TokenBucket(settings.infer_per_s, max(1.0, 2 * settings.infer_per_s),
                                   clock)

    def count(self, path: str, code: int) -> None:
        self.metrics.requests.labels(path if path in ROUTES else "other", str(code)).inc()

    def handle(self, method: str, path: str, read_body: Callable[[int], bytes]):
        allowed = ROUTES.get(path)
        if allowed is None:
            raise ApiError(404, "no such path; try /metrics, /healthz, /latest, /snapshot.jpg "
                                "or POST /infer")
        if method not in allowed:
            raise ApiError(405, "%s takes %s" % (path, " or ".join(allowed)),
                           {"Allow": ", ".join(allowed)})
        if path == "/metrics":
            from .metrics import CONTENT_TYPE_LATEST
            return reply(200, self.metrics.render(), CONTENT_TYPE_LATEST)
        if path == "/healthz":
            return self._healthz()
        if path == "/latest":
            if self.latest.payload is None:
                raise ApiError(404, "no result yet")
            return reply(200, self.latest.payload)
        if path == "/snapshot.jpg":
            return self._snapshot()
        if path == "/infer":
            return self._infer(read_body)
        return reply(200, b"edgeagent %s: /metrics /healthz /latest /snapshot.jpg POST /infer\n"
                     % __version__.encode(), TEXT)

    def _healthz(self):
        last = self.stats.last_processed_mono
        age = None if last is None else round(self._clock() - last, 3)
        state = self.health.effective_state() if self.health is not None else "starting"
        ok = age is not None and age <= self.settings.healthy_within_s
        body = json.dumps({"ok": ok, "state": state, "last_frame_age_s": age,
                           "processed": self.stats.processed}, separators=(",", ":"))
        return reply(200 if ok else 503, body.encode("utf-8"))

    def _snapshot(self):
        latest = self._latest_frame()
        if latest is None:
            raise ApiError(503, "no frame processed yet")
        frame, result = latest
        return reply(200, encode_jpeg(annotate(frame.image, result)), "image/jpeg",
                     {"X-Frame-Index": str(frame.index)})

    def _infer(self, read_body):
        if not self.settings.infer:
            raise ApiError(403, "POST /infer is switched off (http.infer: false)")
        wait = self._bucket.take()
        if wait > 0:
            raise ApiError(429, "over http.infer_per_s=%g; retry in %.1f s" % (
                self.settings.infer_per_s, wait), {"Retry-After": str(max(1, int(wait + 0.999)))})
        body = read_body(self.settings.max_body_bytes)
        endpoint = self.infer
        if endpoint is None:
            raise ApiError(503, "the pipeline is starting; try again")
        image = decode_image(body)
        started = time.monotonic()
        payload = endpoint(image)
        self.metrics.infer_seconds.observe(time.monotonic() - started)
        return reply(200, payload)
