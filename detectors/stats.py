"""Small statistical tests used by the detectors.

Plain Python: the inputs are at most a few thousand values (a window's duration sample, an hour of
window summaries), where numpy's per-call overhead ate its speed, and the engine's process is 14 MB
smaller without it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import median

from .special import beta_regularized, gamma_lower, gamma_upper

MAD_TO_SIGMA = 1.4826
# Standard error of a sample median relative to sigma/sqrt(n) for a normal population.
MEDIAN_SE = 1.2533
MIN_SIGMA = 0.02  # log units: even a perfectly steady operation jitters ~2%


def log_summary(values: Iterable[float]) -> tuple[int, float, float]:
    """(n, median, robust sigma) of log(values): latency and token counts are multiplicative."""
    logs = list(map(math.log, values))
    med = median(logs)
    sigma = MAD_TO_SIGMA * median([abs(x - med) for x in logs]) if len(logs) > 2 else 0.0
    return len(logs), med, max(sigma, MIN_SIGMA)


def quantile(values: Iterable[float], q: float) -> float:
    """The ``q`` quantile, interpolating linearly between order statistics (numpy's default)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def binomial_tail(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return beta_regularized(p, k, n - k + 1)


def poisson_tail(k: int, mu: float) -> float:
    """P(X >= k) for X ~ Poisson(mu)."""
    return gamma_lower(k, mu) if k > 0 else 1.0


def g_test(observed: Sequence[float], expected_p: Sequence[float]) -> float:
    """p-value of the G-test of goodness of fit of ``observed`` counts to proportions ``expected_p``."""
    n = sum(observed)
    g = 2.0 * sum(o * math.log(o / (p * n)) for o, p in zip(observed, expected_p, strict=True) if o > 0)
    df = max(sum(1 for p in expected_p if p > 0) - 1, 1)
    return gamma_upper(df / 2, g / 2)


def surprise(p: float) -> float:
    """-log10 p, the score of a test-based alert, capped so a p of 0 stays a finite number."""
    return min(-math.log10(max(p, 1e-300)), 300.0)
