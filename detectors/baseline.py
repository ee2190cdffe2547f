"""Online baselines over closed windows, learned only from windows judged normal.

Each keeps a bounded ring of per-window summaries (one hour by default), so the baseline follows the
slow daily curve of traffic and latency while a fault, which is never learned, stays visible.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable
from typing import TypeVar

import numpy as np

from .stats import MAD_TO_SIGMA, MEDIAN_SE

T = TypeVar("T")


class ShiftBaseline:
    """Log-scale level of a per-request quantity (latency, input tokens, cost per request).

    Keeps per-window (n, median, sigma) in a numpy ring. The expected noise of a window median with
    n samples is ``sqrt(tau**2 + (MEDIAN_SE * sigma)**2 / n)``: the sampling error, which shrinks
    with traffic, plus ``tau``, the extra window-to-window wander this operation shows, which does not.
    """

    __slots__ = ("_cache", "_filled", "_next", "_rows", "spans")

    def __init__(self, size: int) -> None:
        self._rows = np.empty((size, 3), dtype=np.float64)
        self._next = 0
        self._filled = 0
        self._cache: tuple[float, float, float] | None = None
        self.spans = 0

    def __len__(self) -> int:
        return self._filled

    def add(self, n: int, median: float, sigma: float) -> None:
        self._rows[self._next] = (n, median, sigma)
        self._next = (self._next + 1) % len(self._rows)
        self._filled = min(self._filled + 1, len(self._rows))
        self.spans += n
        self._cache = None

    def estimate(self) -> tuple[float, float, float]:
        """(median, sigma, tau) in log units."""
        if self._cache is None:
            rows = self._rows[: self._filled]
            n, med, sig = rows[:, 0], rows[:, 1], rows[:, 2]
            center = float(np.median(med))
            sigma = float(np.median(sig))
            between = (MAD_TO_SIGMA * float(np.median(np.abs(med - center)))) ** 2
            sampling = float(np.median((MEDIAN_SE * sig) ** 2 / n))
            self._cache = (center, sigma, max(between - sampling, 0.0) ** 0.5)
        return self._cache

    def z(self, n: int, median: float) -> float:
        center, sigma, tau = self.estimate()
        return (median - center) / (tau**2 + (MEDIAN_SE * sigma) ** 2 / n) ** 0.5


class CountBaseline:
    """Per-window event counts and totals (requests, errors, spend) summed over the ring."""

    __slots__ = ("_rows", "_total")

    def __init__(self, size: int, width: int) -> None:
        self._rows: deque[tuple[float, ...]] = deque(maxlen=size)
        self._total = [0.0] * width

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, *row: float) -> None:
        if len(self._rows) == self._rows.maxlen:
            for i, value in enumerate(self._rows[0]):
                self._total[i] -= value
        self._rows.append(row)
        for i, value in enumerate(row):
            self._total[i] += value

    def totals(self) -> list[float]:
        return self._total

    def mean(self, i: int) -> float:
        return self._total[i] / len(self._rows)


class MixBaseline:
    """Category counts (finish reasons) summed over the ring."""

    __slots__ = ("_rows", "total")

    def __init__(self, size: int) -> None:
        self._rows: deque[Counter[str]] = deque(maxlen=size)
        self.total: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, counts: Counter[str]) -> None:
        if len(self._rows) == self._rows.maxlen:
            self.total.subtract(self._rows[0])
            self.total = +self.total
        self._rows.append(counts)
        self.total.update(counts)


def pool_recent(recent: deque[T], min_n: int, size_of: Callable[[T], int]) -> list[T] | None:
    """The fewest newest windows holding ``min_n`` items, or None: quiet keys are judged on more time."""
    taken: list[T] = []
    total = 0
    for item in reversed(recent):
        taken.append(item)
        total += size_of(item)
        if total >= min_n:
            return taken
    return None
