"""Adaptive head sampling for SDKs, served over Jaeger's remote-sampling HTTP API.

Every ``recompute_seconds`` the sampler estimates how many traces per second each (service, root
operation) really starts and sets that operation's probability to ``target / rate`` (within
``[min_probability, 1]``), so a busy endpoint is sampled down and a rare one kept whole. Root spans
are counted as the tail sampler's read loop sees them, before any tail-sampling deletion; each
counts ``1 / p`` where ``p`` is the probability it was sampled with: the ``sampler.param`` tag when
the client reports it (Jaeger clients do), else the probability tracebox was serving, times the
collector's own head-sampling rate. The estimate is smoothed (EWMA) and a probability at most
doubles per recomputation, so clients that adopt a new strategy late do not make it oscillate.

The strategy is the JSON of Jaeger's ``SamplingStrategyResponse`` (api_v2 sampling.proto mapped to
JSON), which OpenTelemetry's ``jaeger_remote`` samplers read::

    {"strategyType": "PROBABILISTIC",
     "probabilisticSampling": {"samplingRate": 1.0},
     "operationSampling": {"defaultSamplingProbability": 1.0,
                           "defaultLowerBoundTracesPerSecond": 0.0167,
                           "perOperationStrategies": [
                               {"operation": "get /busy", "probabilisticSampling": {"samplingRate": 0.01}}]}}
"""

from __future__ import annotations

from typing import Any

from tracebox.appliance.sampling_config import AdaptiveConfig

SMOOTHING = 0.5  # weight of the newest window in the rate estimate
MAX_INCREASE = 2.0  # a probability at most doubles per recomputation


class AdaptiveSampler:
    def __init__(self, config: AdaptiveConfig, head_rate: float = 1.0, now: float = 0.0) -> None:
        self.config = config
        self.head_rate = head_rate if head_rate > 0 else 1.0
        self.probability: dict[tuple[str, str], float] = {}
        self.rate: dict[tuple[str, str], float] = {}  # estimated traces/second before sampling
        self._weights: dict[tuple[str, str], float] = {}
        self._window_start: float | None = now or None
        self.recomputed = 0

    def observe(self, service: str, operation: str, tags: dict[str, str] | None) -> None:
        """Count one root span (a trace started by ``service`` at ``operation``)."""
        if not self.config.enabled:
            return
        key = (service, operation)
        p = _reported_probability(tags)
        if p is None:
            p = self.probability.get(key, self.config.default_probability)
        p = max(p, self.config.min_probability) * self.head_rate
        self._weights[key] = self._weights.get(key, 0.0) + 1.0 / p

    def recompute(self, now: float) -> bool:
        """Recompute the probabilities once a window has passed; True when it did."""
        if not self.config.enabled:
            return False
        if self._window_start is None:
            self._window_start = now
            return False
        elapsed = now - self._window_start
        if elapsed < self.config.recompute_seconds:
            return False
        c = self.config
        for key in set(self._weights) | set(self.probability):
            observed = self._weights.get(key, 0.0) / elapsed
            previous = self.rate.get(key)
            rate = observed if previous is None else (1 - SMOOTHING) * previous + SMOOTHING * observed
            self.rate[key] = rate
            old = self.probability.get(key, c.default_probability)
            wanted = 1.0 if rate <= c.target_traces_per_second else c.target_traces_per_second / rate
            new = min(1.0, max(c.min_probability, wanted), max(old, c.min_probability) * MAX_INCREASE)
            if rate < 1e-6 and new >= 1.0:  # gone quiet: forget it (the default applies again)
                self.probability.pop(key, None)
                self.rate.pop(key, None)
            else:
                self.probability[key] = new
        self._weights.clear()
        self._window_start = now
        self.recomputed += 1
        return True

    def strategy(self, service: str) -> dict[str, Any]:
        """The ``SamplingStrategyResponse`` for one service."""
        c = self.config
        default = {"samplingRate": c.default_probability}
        if not c.enabled:
            return {"strategyType": "PROBABILISTIC", "probabilisticSampling": default}
        operations = sorted(
            ((name, p) for (s, name), p in self.probability.items() if s == service),
            key=lambda item: -self.rate.get((service, item[0]), 0.0),
        )[: c.max_operations]
        return {
            "strategyType": "PROBABILISTIC",
            "probabilisticSampling": default,
            "operationSampling": {
                "defaultSamplingProbability": c.default_probability,
                "defaultLowerBoundTracesPerSecond": c.lower_bound_traces_per_second,
                "perOperationStrategies": [
                    {"operation": name, "probabilisticSampling": {"samplingRate": round(p, 6)}}
                    for name, p in sorted(operations)
                ],
            },
        }

    def describe(self) -> list[dict[str, Any]]:
        """Every operation's estimated rate and probability, for ``/api/tracebox/sampling``."""
        return [
            {
                "serviceName": s,
                "operation": name,
                "tracesPerSecond": round(self.rate.get((s, name), 0.0), 4),
                "probability": round(p, 6),
            }
            for (s, name), p in sorted(self.probability.items())
        ]


def _reported_probability(tags: dict[str, str] | None) -> float | None:
    if not tags or tags.get("sampler.type") != "probabilistic":
        return None
    try:
        p = float(tags.get("sampler.param", ""))
    except ValueError:
        return None
    return p if 0.0 < p <= 1.0 else None
