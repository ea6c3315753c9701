"""Capped exponential backoff with jitter, shared by the MQTT link and camera recovery.

Delays run initial, 2*initial, 4*initial ... up to max_s, each scaled by a random factor so a
fleet does not retry in lockstep. No dependencies; runs on devices (Python 3.6)."""

import random
from typing import Callable


class Backoff:
    """Symmetric jitter: each delay is scaled by 1 +- jitter, never above max_s (at the cap the
    jitter only shortens). only_shorter: scaled by 1 - jitter*r instead, so a delay lies in
    [(1 - jitter) * ceiling, ceiling] (jitter 0.5: the MQTT link's [ceiling/2, ceiling])."""

    def __init__(self, initial_s: float, max_s: float, jitter: float,
                 rng: Callable[[], float] = random.random, only_shorter: bool = False) -> None:
        if not 0 < initial_s <= max_s or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial_s <= max_s and 0 <= jitter < 1, got "
                             "%s, %s, %s" % (initial_s, max_s, jitter))
        self.initial_s = initial_s
        self.max_s = max_s
        self.jitter = jitter
        self.only_shorter = only_shorter
        self._rng = rng
        self._attempt = 0

    def next_delay(self) -> float:
        base = min(self.max_s, self.initial_s * 2 ** min(self._attempt, 32))
        self._attempt += 1
        if self.only_shorter:
            return base * (1.0 - self.jitter * self._rng())
        return min(self.max_s, base * (1.0 + self.jitter * (2.0 * self._rng() - 1.0)))

    def longest(self) -> None:
        """Jump to the cap: the next delays are max_s (jittered)."""
        self._attempt = 32

    def reset(self) -> None:
        self._attempt = 0
