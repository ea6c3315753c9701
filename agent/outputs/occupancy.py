"""Per-label presence for Home Assistant's occupancy sensors (docs/homeassistant.md).

Results are published only for frames with detections, so "nobody there" never reaches the
results topic; the pipeline's observe hook sees every frame, so presence is decided here and
published on `<prefix>/<device>/occupancy` on every change and every refresh_s."""

import json
import threading
from typing import Dict, Optional, Sequence


def occupancy_payload(states: Dict[str, bool]) -> bytes:
    return json.dumps(states, sort_keys=True, separators=(",", ":")).encode("utf-8")


class Occupancy:
    """Per-label presence: a label is detected while a frame showed it within hold_s.

    observe() runs on the pipeline's output thread for every processed frame; poll() on the
    dashboards' ticker returns the payload to publish when a state changed or refresh_s passed."""

    def __init__(self, labels: Sequence[str], hold_s: float, refresh_s: float) -> None:
        self.labels = tuple(labels)
        self.hold_s = hold_s
        self.refresh_s = refresh_s
        self._seen = {}          # type: Dict[str, float]   label -> monotonic time last seen
        self._sent = None        # type: Optional[Dict[str, bool]]
        self._sent_at = None     # type: Optional[float]
        self._lock = threading.Lock()

    def observe(self, labels_in_frame: Sequence[str], mono: float) -> None:
        present = set(labels_in_frame)
        with self._lock:
            for label in self.labels:
                if label in present:
                    self._seen[label] = mono

    def states(self, now: float) -> Dict[str, bool]:
        with self._lock:
            return {label: label in self._seen and now - self._seen[label] <= self.hold_s
                    for label in self.labels}

    def poll(self, now: float) -> Optional[bytes]:
        states = self.states(now)
        if states == self._sent and self._sent_at is not None and \
                now - self._sent_at < self.refresh_s:
            return None
        self._sent, self._sent_at = states, now
        return occupancy_payload(states)

    def unsent(self) -> None:
        """The last poll's payload did not go out (offline): the next poll sends it again."""
        self._sent_at = None
