"""When to try a notification again: exponential backoff with jitter, or exactly what the receiver
asked for in Retry-After, and never past the give-up time."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    initial: float = 1.0  # seconds before the second attempt (before jitter)
    maximum: float = 300.0  # cap on the backoff (a Retry-After is honoured as it is)
    give_up_after: float = 24 * 3600.0  # from the notification's creation

    def delay(self, attempts: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait after the ``attempts``-th failed attempt. The jitter ("equal jitter": half
        fixed, half random) keeps receivers coming back from an outage from being hit all at once."""
        if retry_after is not None:
            return max(retry_after, 0.0)
        backoff = min(self.maximum, self.initial * 2 ** (attempts - 1))
        return backoff / 2 + rng.uniform(0, backoff / 2)
