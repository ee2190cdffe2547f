"""Token cost per route (service + the server span an LLM call sits under) and per user/tenant.

Three signals, each needing a significant, relative *and* absolute jump:

- ``input_tokens``: median input tokens per request (context accumulation);
- ``cost_per_request``: median cost per request (a swap to a pricier model);
- ``spend``: requests and spend per window (a runaway caller), per route and per user.id/tenant.id.

A route's spend jump that a single user or tenant explains is left to that principal's alert.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from typing import Any

from .accumulators import LlmCall
from .baseline import CountBaseline, ShiftBaseline, pool_recent
from .config import EngineConfig
from .detector import LEARNING, LOW_TRAFFIC, MUTED, READY, Detector
from .finding import ANOMALOUS, ELEVATED, NORMAL, Finding, shift_state
from .stats import log_summary, poisson_tail, surprise

# (service, route or "user.id=..."/"tenant.id=...", scope): scope is "route" or "principal"
TokenKey = tuple[str, str, str]


class TokenWindow:
    __slots__ = ("costs", "count", "inputs", "models", "spend", "top")

    def __init__(self) -> None:
        self.count = 0
        self.inputs: list[int] = []
        self.costs: list[float] = []
        self.spend = 0.0
        self.models: Counter[str] = Counter()
        self.top: tuple[float, str] = (-1.0, "")  # the priciest (or longest) call's trace

    def add(self, call: LlmCall) -> None:
        self.count += 1
        self.models[call.model] += 1
        if call.input_tokens > 0:
            self.inputs.append(call.input_tokens)
        weight = float(call.input_tokens)
        if call.cost_usd:
            self.costs.append(call.cost_usd)
            self.spend += call.cost_usd
            weight = call.cost_usd * 1e6
        if weight > self.top[0]:
            self.top = (weight, call.trace_id)


@dataclass(slots=True)
class _Learned:
    inputs: ShiftBaseline
    costs: ShiftBaseline
    spend: CountBaseline  # rows: (requests, spend)


@dataclass(slots=True)
class _Signal:
    name: str
    state: str
    score: float
    expected: dict[str, Any]
    observed: dict[str, Any]
    excess: float = 0.0


def _size(window: TokenWindow | None) -> int:
    return window.count if window else 0


class TokenCostDetector(Detector[TokenKey, TokenWindow]):
    kind = "token_cost"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.learned: dict[TokenKey, _Learned] = {}

    def evaluate(self, calls: list[LlmCall]) -> list[Finding]:
        closed: dict[TokenKey, TokenWindow] = {}
        for call in calls:
            keys = [(call.service, call.route or call.name, "route")]
            keys += [(call.service, principal, "principal") for principal in call.principals]
            for key in keys:
                window = closed.get(key)
                if window is None:
                    window = closed[key] = TokenWindow()
                window.add(call)
        findings = [f for key, recent in self.windows(closed) if (f := self._key(key, recent))]
        return _leave_to_principals(findings)

    def _key(self, key: TokenKey, recent: Any) -> Finding | None:
        cfg = self.config
        learned = self.learned.get(key)
        if learned is None:
            size = cfg.baseline_windows
            learned = self.learned[key] = _Learned(
                ShiftBaseline(size), ShiftBaseline(size), CountBaseline(size, 2)
            )
        window: TokenWindow | None = recent[-1]
        if window is None and not any(recent):  # quiet: nothing to judge, the baseline sees a zero
            learned.spend.add(0, 0.0)
            self.status[key] = LOW_TRAFFIC
            return None
        settings = self.settings(key[0], key[1])
        pool = pool_recent(recent, settings.min_traffic or cfg.token_min_traffic, _size)
        signals: list[_Signal] = []
        if settings.mute:
            self.status[key] = MUTED
        elif pool is None:
            self.status[key] = LOW_TRAFFIC
        elif (
            len(learned.spend) < cfg.min_baseline_windows or learned.spend.totals()[0] < cfg.token_min_traffic
        ):
            self.status[key] = LEARNING
        else:
            self.status[key] = READY
            windows = [w for w in pool if w]
            signals.append(self._spend(learned.spend, windows, len(pool), settings.sensitivity))
            if key[2] == "route":
                signals += self._per_request(learned, windows, len(pool), settings.sensitivity)
        states = {s.name: s.state for s in signals}
        if (
            window
            and window.inputs
            and len(window.inputs) >= 3
            and states.get("input_tokens", NORMAL) == NORMAL
        ):
            learned.inputs.add(*log_summary(window.inputs))
        if (
            window
            and window.costs
            and len(window.costs) >= 3
            and states.get("cost_per_request", NORMAL) == NORMAL
        ):
            learned.costs.add(*log_summary(window.costs))
        if states.get("spend", NORMAL) == NORMAL:
            learned.spend.add(window.count if window else 0, window.spend if window else 0.0)
        return self._finding(key, signals, pool) if signals else None

    def _spend(
        self, baseline: CountBaseline, windows: list[TokenWindow], span: int, sensitivity: float
    ) -> _Signal:
        cfg = self.config
        count = sum(w.count for w in windows)
        spend = sum(w.spend for w in windows)
        mu = max(baseline.mean(0) * span, 0.1)
        expected_spend = baseline.mean(1) * span
        p = poisson_tail(count, mu)
        per_hour = 3600 / (span * cfg.window_seconds)
        extra = (spend - expected_spend) * per_hour
        ratio = spend / expected_spend if expected_spend > 0 else math.inf
        floor = cfg.token_min_spend_per_hour
        if p < cfg.token_alpha ** (1 / sensitivity) and ratio >= 2 * cfg.token_min_ratio and extra >= floor:
            state = ANOMALOUS
        elif p > 1e-3 or ratio < cfg.token_min_ratio or extra < floor / 2:
            state = NORMAL
        else:
            state = ELEVATED
        return _Signal(
            "spend",
            state,
            surprise(p),
            {
                "requestsPerWindow": round(mu / span, 3),
                "spendPerHourUsd": round(expected_spend * per_hour, 4),
            },
            {"requestsPerWindow": round(count / span, 3), "spendPerHourUsd": round(spend * per_hour, 4)},
            extra,
        )

    def _per_request(
        self, learned: _Learned, windows: list[TokenWindow], span: int, sensitivity: float
    ) -> list[_Signal]:
        cfg = self.config
        z_fire = cfg.token_z / sensitivity
        out = []
        inputs = [x for w in windows for x in w.inputs]
        if len(inputs) >= 3 and len(learned.inputs) >= cfg.min_baseline_windows:
            n, median, _ = log_summary(inputs)
            center = learned.inputs.estimate()[0]
            z = learned.inputs.z(n, median)
            delta = math.exp(median) - math.exp(center)
            state = shift_state(
                z, z_fire, math.exp(median - center), cfg.token_min_ratio, delta, cfg.token_min_input_delta
            )
            out.append(
                _Signal(
                    "input_tokens",
                    state,
                    z,
                    {"inputTokensMedian": round(math.exp(center))},
                    {"inputTokensMedian": round(math.exp(median))},
                    delta,
                )
            )
        costs = [x for w in windows for x in w.costs]
        if len(costs) >= 3 and len(learned.costs) >= cfg.min_baseline_windows:
            n, median, _ = log_summary(costs)
            center = learned.costs.estimate()[0]
            z = learned.costs.z(n, median)
            extra = (math.exp(median) - math.exp(center)) * n * 3600 / (span * cfg.window_seconds)
            ratio = math.exp(median - center)
            state = shift_state(z, z_fire, ratio, cfg.token_min_ratio, extra, cfg.token_min_spend_per_hour)
            out.append(
                _Signal(
                    "cost_per_request",
                    state,
                    z,
                    {"costPerRequestUsd": round(math.exp(center), 6)},
                    {
                        "costPerRequestUsd": round(math.exp(median), 6),
                        "extraSpendPerHourUsd": round(extra, 4),
                    },
                    extra,
                )
            )
        return out

    def _finding(
        self, key: TokenKey, signals: list[_Signal], pool: list[TokenWindow | None] | None
    ) -> Finding:
        firing = [s for s in signals if s.state == ANOMALOUS]
        lead = max(firing or signals, key=lambda s: s.score)
        if firing:
            state = ANOMALOUS
        elif all(s.state == NORMAL for s in signals):
            state = NORMAL
        else:
            state = ELEVATED
        windows = [w for w in pool or () if w]
        models: Counter[str] = Counter()
        for w in windows:
            models.update(w.models)
        expected: dict[str, Any] = {}
        observed: dict[str, Any] = {"requests": sum(w.count for w in windows)}
        for s in signals:
            expected.update(s.expected)
            observed.update(s.observed)
        tops = sorted((w.top for w in windows), reverse=True)[: self.config.trace_examples]
        return Finding(
            kind=self.kind,
            service=key[0],
            operation=key[1],
            state=state,
            score=round(lead.score, 2),
            expected=expected,
            observed=observed,
            trace_ids=[trace for _, trace in tops if trace],
            labels={
                "view": key[2],
                "signal": lead.name,
                "signals": [s.name for s in firing],
                "models": dict(models.most_common(3)),
            },
            excess=lead.excess if lead.name == "spend" else 0.0,
        )

    def describe(self, key: TokenKey) -> dict[str, Any]:
        learned = self.learned.get(key)
        out: dict[str, Any] = {"service": key[0], "operation": key[1], "view": key[2]}
        out["windows"] = len(learned.spend) if learned else 0
        return out


def _leave_to_principals(findings: list[Finding]) -> list[Finding]:
    """A route's spend jump mostly explained by one user's or tenant's spend jump is not its own alert."""
    runaway = {}
    for f in findings:
        if f.labels["view"] == "principal" and f.state == ANOMALOUS:
            runaway[f.service] = max(runaway.get(f.service, 0.0), f.excess)
    for f in findings:
        if (
            f.labels["view"] == "route"
            and f.state == ANOMALOUS
            and f.labels["signals"] == ["spend"]
            and runaway.get(f.service, 0.0) >= 0.5 * f.excess
        ):
            f.state = ELEVATED
            f.labels["explainedBy"] = "principal"
    return findings
