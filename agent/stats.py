"""Counters and latency windows shared by the pipeline threads and read by health."""

import collections
import threading
import time
from typing import Deque, Dict

WINDOW = 512


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = min(len(ordered) - 1, max(0, int(round(q / 100.0 * (len(ordered) - 1)))))
    return ordered[rank]


class PipelineStats:
    """Thread-safe counts (captured / processed / dropped) and recent stage latencies."""

    def __init__(self, clock=time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.captured = 0
        self.processed = 0
        self.dropped = 0
        self.last_processed_mono = None    # when a frame last made it through inference
        self._latency = collections.defaultdict(
            lambda: collections.deque(maxlen=WINDOW))   # type: Dict[str, Deque[float]]
        self._window = collections.deque(maxlen=WINDOW)  # (mono, captured, processed, dropped)

    def count_captured(self, n: int = 1) -> None:
        with self._lock:
            self.captured += n

    def count_dropped(self, n: int = 1) -> None:
        with self._lock:
            self.dropped += n

    def count_processed(self, timing_ms: Dict[str, float]) -> None:
        with self._lock:
            self.processed += 1
            self.last_processed_mono = self._clock()
            for stage, ms in timing_ms.items():
                self._latency[stage].append(ms)

    def latency(self) -> Dict[str, Dict[str, float]]:
        with self._lock:
            windows = {stage: list(values) for stage, values in self._latency.items()}
        return {stage: {"p50": round(percentile(v, 50), 2), "p95": round(percentile(v, 95), 2)}
                for stage, v in windows.items()}

    def fps(self) -> Dict[str, float]:
        """Rates since the previous call (the health interval)."""
        now = self._clock()
        with self._lock:
            sample = (now, self.captured, self.processed, self.dropped)
            previous = self._window[-1] if self._window else None
            self._window.append(sample)
        if previous is None or now <= previous[0]:
            return {"captured": 0.0, "processed": 0.0, "dropped": 0.0}
        span = now - previous[0]
        return {name: round((sample[i] - previous[i]) / span, 2)
                for i, name in ((1, "captured"), (2, "processed"), (3, "dropped"))}
