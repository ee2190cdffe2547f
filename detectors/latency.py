"""Latency per operation: the median of recent durations against a learned log-scale baseline.

Nodes are (service, span name, view). A CLIENT span with a remote service is the caller's view of
the callee and counts for the callee (view ``client``), so an uninstrumented database still gets a
baseline; the engine's blame step then keeps callers quiet when a dependency explains their delay.
"""

from __future__ import annotations

import math
from typing import Any

from .accumulators import OpWindow
from .baseline import ShiftBaseline, pool_recent
from .config import EngineConfig
from .detector import Detector
from .finding import NORMAL, Finding, Node, shift_state
from .stats import log_summary, quantile


def _size(window: OpWindow | None) -> int:
    return window.timed if window else 0


class LatencyDetector(Detector[Node, OpWindow]):
    kind = "latency"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.learned: dict[Node, ShiftBaseline] = {}

    def evaluate(self, closed: dict[Node, OpWindow]) -> list[Finding]:
        cfg = self.config
        findings = []
        for node, recent in self.windows(closed):
            baseline = self.learned.get(node)
            if baseline is None:
                baseline = self.learned[node] = ShiftBaseline(cfg.baseline_windows)
            settings = self.settings(node[0], node[1])
            finding = None
            pool = pool_recent(recent, settings.min_traffic or cfg.latency_min_traffic, _size)
            if self.judged(node, settings, pool, len(baseline) >= cfg.min_baseline_windows):
                finding = self._judge(node, baseline, pool, settings.sensitivity)
                findings.append(finding)
            window = recent[-1]
            if window and len(window.durations) >= 3 and (finding is None or finding.state == NORMAL):
                baseline.add(*log_summary(window.durations))
        return findings

    def _judge(
        self, node: Node, baseline: ShiftBaseline, pool: list[OpWindow], sensitivity: float
    ) -> Finding:
        cfg = self.config
        windows = [w for w in pool if w]
        durations = [d for w in windows for d in w.durations]
        n, median, _ = log_summary(durations)
        center, sigma, tau = baseline.estimate()
        z = baseline.z(n, median)
        ratio = math.exp(median - center)
        delta = math.exp(median) - math.exp(center)
        z_fire = cfg.latency_z / sensitivity
        state = shift_state(z, z_fire, ratio, cfg.latency_min_ratio, delta, cfg.latency_min_delta_us)
        noise = (tau**2 + (1.2533 * sigma) ** 2 / n) ** 0.5
        slowest = sorted(windows, key=lambda w: -w.slowest)[: cfg.trace_examples]
        return Finding(
            kind=self.kind,
            service=node[0],
            operation=node[1],
            state=state,
            score=round(z, 2),
            expected={
                "medianUs": round(math.exp(center)),
                "p90Us": round(math.exp(center + 1.2816 * sigma)),
                "spread": round(sigma, 4),
                "thresholdUs": round(
                    max(math.exp(center + z_fire * noise), math.exp(center) * cfg.latency_min_ratio)
                ),
            },
            observed={
                "medianUs": round(math.exp(median)),
                "p90Us": round(quantile(durations, 0.9)),
                "count": sum(w.timed for w in windows),
                "ratio": round(ratio, 3),
            },
            trace_ids=[w.slowest_trace for w in slowest],
            labels={"view": node[2]},
            node=node,
            excess=delta,
        )

    def describe(self, key: Node) -> dict[str, Any]:
        baseline = self.learned.get(key)
        out: dict[str, Any] = {"service": key[0], "operation": key[1], "view": key[2]}
        out["windows"] = len(baseline) if baseline else 0
        if baseline and len(baseline):
            center, sigma, _ = baseline.estimate()
            out["expected"] = {"medianUs": round(math.exp(center)), "spread": round(sigma, 4)}
        return out
