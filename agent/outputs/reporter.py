"""FrameResult -> the result payload of docs/mqtt.md, with the output policy applied.

`seq` is not known here: it is assigned where results are stored (the outbox), so the payload is
built by a function of seq that the sink calls."""

import logging
from typing import Callable, Dict, Optional, Tuple

from ..types import FrameResult
from ..wire import (BOOT_ID, RESULT_SCHEMA, STATUS_SCHEMA, frame_result_body,  # noqa: F401
                    labels_of, status_payload, to_json_bytes, utc_iso)  # re-exported

log = logging.getLogger(__name__)

Payload = Callable[[int], bytes]
# sink(make_payload) -> seq, or None when the result could not be stored; the MQTT publisher's
# submit, or a local counter
Sink = Callable[[Payload], Optional[int]]


class ResultReporter:
    """Decides which results are published (policy) and builds their payloads."""

    def __init__(self, device_id: str, pipeline: str, model: str, backend: str, sink: Sink,
                 policy: str = "every_frame", interval_s: float = 1.0,
                 echo: Optional[Callable[[bytes], None]] = None) -> None:
        self._base = {"schema": RESULT_SCHEMA, "device_id": device_id, "boot_id": BOOT_ID,
                      "pipeline": pipeline, "model": model, "backend": backend}
        self._sink = sink
        self._policy = policy
        self._interval_s = interval_s
        self._echo = echo
        self._echo_all = bool(getattr(echo, "every_frame", False))
        self._last_key = None          # type: Optional[Tuple]
        self._last_ts = None           # type: Optional[float]
        self.published = 0

    def __call__(self, result: FrameResult) -> Optional[int]:
        """Publish `result` if the policy wants it; its seq, else None."""
        if not self._wanted(result):
            if self._echo_all:       # --print-all: unpublished frames too, marked so, no seq
                self._echo(to_json_bytes(dict(self._base, published=False, **self._body(result))))
            return None
        body, made = self._body(result), []
        seq = self._sink(lambda s: made.append(self._encode(body, s)) or made[-1])
        if seq is None:
            return None               # not stored (counted by the sink): not echoed either
        self.published += 1
        if self._echo is not None and made:
            self._echo(made[-1])      # only once stored: what --print shows is never lost
        return seq

    def _encode(self, body: Dict, seq: int) -> bytes:
        return to_json_bytes(dict(self._base, seq=seq, **body))

    def _wanted(self, result: FrameResult) -> bool:
        if not result.has_results:
            self._last_key = None     # something new appearing after an empty frame is a change
            return False
        if self._policy == "on_change":
            key = _content_key(result)
            changed, self._last_key = key != self._last_key, key
            return changed
        if self._policy == "interval":
            if self._last_ts is not None and result.ts - self._last_ts < self._interval_s:
                return False
            self._last_ts = result.ts
        return True

    @staticmethod
    def _body(result: FrameResult) -> Dict:
        return frame_result_body(result)


def _content_key(result: FrameResult) -> Tuple:
    found = result.detections if result.detections is not None else result.classifications
    labels = labels_of(found)
    if result.classifications is not None:
        return tuple(labels[:1])      # the top class changing is what matters
    return tuple(sorted(labels))


class LocalSequence:
    """seq for results that go nowhere durable (--print without MQTT)."""

    def __init__(self) -> None:
        self._next = 1

    def __call__(self, make_payload: Payload) -> int:
        seq, self._next = self._next, self._next + 1
        make_payload(seq)
        return seq
