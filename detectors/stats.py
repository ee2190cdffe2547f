"""Small statistical tests used by the detectors, vectorised where it matters."""

from __future__ import annotations

import math

import numpy as np

from .special import beta_regularized, gamma_lower, gamma_upper

MAD_TO_SIGMA = 1.4826
# Standard error of a sample median relative to sigma/sqrt(n) for a normal population.
MEDIAN_SE = 1.2533
MIN_SIGMA = 0.02  # log units: even a perfectly steady operation jitters ~2%


def log_summary(values: list[float] | np.ndarray) -> tuple[int, float, float]:
    """(n, median, robust sigma) of log(values): latency and token counts are multiplicative."""
    logs = np.log(np.asarray(values, dtype=np.float64))
    med = float(np.median(logs))
    sigma = MAD_TO_SIGMA * float(np.median(np.abs(logs - med))) if logs.size > 2 else 0.0
    return int(logs.size), med, max(sigma, MIN_SIGMA)


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


def g_test(observed: np.ndarray, expected_p: np.ndarray) -> float:
    """p-value of the G-test of goodness of fit of ``observed`` counts to proportions ``expected_p``."""
    n = observed.sum()
    expected = expected_p * n
    mask = observed > 0
    g = 2.0 * float(np.sum(observed[mask] * np.log(observed[mask] / expected[mask])))
    df = max(int(np.count_nonzero(expected_p > 0)) - 1, 1)
    return gamma_upper(df / 2, g / 2)


def surprise(p: float) -> float:
    """-log10 p, the score of a test-based alert, capped so a p of 0 stays a finite number."""
    return min(-math.log10(max(p, 1e-300)), 300.0)
