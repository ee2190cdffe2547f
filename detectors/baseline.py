"""Online baselines over closed windows, learned only from windows judged normal.

Each keeps a bounded ring of per-window summaries (one hour by default), so the baseline follows the
slow daily curve of traffic and latency while a fault, which is never learned, stays visible.
"""

from __future__ import annotations

from array import array
from collections import Counter, deque
from collections.abc import Callable
from statistics import median
from typing import TypeVar

from .stats import MAD_TO_SIGMA, MEDIAN_SE

T = TypeVar("T")


class ShiftBaseline:
    """Log-scale level of a per-request quantity (latency, input tokens, cost per request).

    Keeps per-window (n, median, sigma) in a ring of three arrays. The expected noise of a window
    median with n samples is ``sqrt(tau**2 + (MEDIAN_SE * sigma)**2 / n)``: the sampling error,
    which shrinks with traffic, plus ``tau``, the extra window-to-window wander this operation
    shows, which does not.
    """

    __slots__ = ("_cache", "_filled", "_medians", "_next", "_ns", "_sigmas", "spans")

    def __init__(self, size: int) -> None:
        self._ns = array("d", bytes(8 * size))
        self._medians = array("d", bytes(8 * size))
        self._sigmas = array("d", bytes(8 * size))
        self._next = 0
        self._filled = 0
        self._cache: tuple[float, float, float] | None = None
        self.spans = 0

    def __len__(self) -> int:
        return self._filled

    def add(self, n: int, median: float, sigma: float) -> None:
        i = self._next
        self._ns[i], self._medians[i], self._sigmas[i] = n, median, sigma
        self._next = (i + 1) % len(self._ns)
        self._filled = min(self._filled + 1, len(self._ns))
        self.spans += n
        self._cache = None

    def estimate(self) -> tuple[float, float, float]:
        """(median, sigma, tau) in log units."""
        if self._cache is None:
            filled = self._filled
            ns, medians, sigmas = self._ns[:filled], self._medians[:filled], self._sigmas[:filled]
            center = median(medians)
            sigma = median(sigmas)
            between = (MAD_TO_SIGMA * median([abs(m - center) for m in medians])) ** 2
            sampling = median([(MEDIAN_SE * s) ** 2 / n for s, n in zip(sigmas, ns, strict=True)])
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
