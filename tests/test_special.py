"""The detectors' distribution tails agree with scipy's, down to the tiny p-values of strong anomalies."""

from __future__ import annotations

import random

import pytest
from scipy import special as reference

from tracebox.detectors.special import gamma_upper
from tracebox.detectors.stats import binomial_tail, poisson_tail

CASES = 3_000


def _close(got: float, want: float) -> bool:
    return want < 1e-290 or abs(got - want) <= 1e-8 * want


@pytest.mark.parametrize("seed", range(3))
def test_binomial_tail(seed):
    rnd = random.Random(seed)
    for _ in range(CASES):
        n = rnd.choice([1, 2, 7, 50, 1_000, 200_000])
        k = rnd.randint(0, n + 1)
        p = rnd.choice([1e-6, 0.01, 0.5, 0.999, rnd.random()])
        want = float(reference.bdtrc(k - 1, n, p)) if k > 0 else 1.0
        assert _close(binomial_tail(k, n, p), want), (k, n, p)


@pytest.mark.parametrize("seed", range(3))
def test_poisson_tail(seed):
    rnd = random.Random(seed)
    for _ in range(CASES):
        mu = rnd.choice([0.01, 3.0, 300.0, 5_000.0, rnd.random() * 100])
        k = rnd.randint(0, int(mu * 3) + 5)
        want = float(reference.pdtrc(k - 1, mu)) if k > 0 else 1.0
        assert _close(poisson_tail(k, mu), want), (k, mu)


@pytest.mark.parametrize("seed", range(3))
def test_chi_square_survival(seed):
    rnd = random.Random(seed)
    for _ in range(CASES):
        df = rnd.randint(1, 50)
        g = rnd.random() * rnd.choice([1, 10, 100, 2_000])
        assert _close(gamma_upper(df / 2, g / 2), float(reference.chdtrc(df, g))), (df, g)


def test_extreme_tails_stay_positive_and_ordered():
    """A strong anomaly's p-value is tiny but not 0, and a stronger one is smaller still."""
    tails = [binomial_tail(k, 10_000, 0.001) for k in (30, 60, 120)]
    assert 0 < tails[2] < tails[1] < tails[0] < 1e-6
