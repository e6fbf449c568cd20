"""Exponential reconnect delays with jitter (pure)."""

import random


class Backoff:
    def __init__(
        self, initial: float, maximum: float, factor: float = 2.0, jitter: float = 0.2
    ) -> None:
        self._initial = initial
        self._max = maximum
        self._factor = factor
        self._jitter = jitter
        self._next = initial

    def next_delay(self) -> float:
        """The delay before the next attempt; grows until ``maximum``."""
        base = self._next
        self._next = min(self._max, self._next * self._factor)
        spread = base * self._jitter
        return max(0.0, min(self._max, base + random.uniform(-spread, spread)))

    def reset(self) -> None:
        """Call after a connection that worked."""
        self._next = self._initial
