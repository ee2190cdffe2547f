"""Error-ratio bursts per operation: a binomial test against the operation's own learned ratio."""

from __future__ import annotations

from typing import Any

from .accumulators import OpWindow
from .baseline import CountBaseline, pool_recent
from .config import EngineConfig
from .detector import Detector
from .finding import ANOMALOUS, ELEVATED, NORMAL, Finding, Node
from .stats import binomial_tail, surprise

# Beta prior on the error ratio (1 error in 200 calls) so a never-failing operation does not
# make its first error look infinitely surprising; the floor keeps the test honest on tiny ratios.
PRIOR_ERRORS, PRIOR_CALLS, FLOOR_RATIO = 1.0, 200.0, 0.002
MIN_BASELINE_CALLS = 200


def _size(window: OpWindow | None) -> int:
    return window.count if window else 0


class ErrorDetector(Detector[Node, OpWindow]):
    kind = "error"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.learned: dict[Node, CountBaseline] = {}  # rows: (calls, errors)

    def evaluate(self, closed: dict[Node, OpWindow]) -> list[Finding]:
        cfg = self.config
        findings = []
        for node, recent in self.windows(closed):
            baseline = self.learned.get(node)
            if baseline is None:
                baseline = self.learned[node] = CountBaseline(cfg.baseline_windows, 2)
            settings = self.settings(node[0], node[1])
            finding = None
            pool = pool_recent(recent, settings.min_traffic or cfg.error_min_traffic, _size)
            learned = len(baseline) >= cfg.min_baseline_windows and baseline.totals()[0] >= MIN_BASELINE_CALLS
            if self.judged(node, settings, pool, learned):
                finding = self._judge(node, baseline, pool, settings.sensitivity)
                findings.append(finding)
            window = recent[-1]
            if window and (finding is None or finding.state == NORMAL):
                baseline.add(window.count, window.errors)
        return findings

    def _judge(
        self, node: Node, baseline: CountBaseline, pool: list[OpWindow | None], sensitivity: float
    ) -> Finding:
        cfg = self.config
        windows = [w for w in pool if w]
        calls = sum(w.count for w in windows)
        errors = sum(w.errors for w in windows)
        base_calls, base_errors = baseline.totals()
        expected = max((base_errors + PRIOR_ERRORS) / (base_calls + PRIOR_CALLS), FLOOR_RATIO)
        ratio = errors / calls
        p = binomial_tail(errors, calls, expected) if errors else 1.0
        alpha = cfg.error_alpha ** (1 / sensitivity)
        bar = max(2 * expected, expected + cfg.error_min_delta)
        if p < alpha and ratio >= bar and errors >= cfg.error_min_errors:
            state = ANOMALOUS
        elif p > 1e-3 or ratio < expected + cfg.error_min_delta / 2:
            state = NORMAL
        else:
            state = ELEVATED
        examples = [t for w in windows for t in w.error_traces][: cfg.trace_examples]
        return Finding(
            kind=self.kind,
            service=node[0],
            operation=node[1],
            state=state,
            score=round(surprise(p), 2),
            expected={"errorRatio": round(expected, 5), "threshold": round(bar, 5), "calls": int(base_calls)},
            observed={"errorRatio": round(ratio, 5), "errors": errors, "calls": calls, "pValue": p},
            trace_ids=examples,
            labels={"view": node[2]},
            node=node,
            excess=ratio - expected,
        )

    def describe(self, key: Node) -> dict[str, Any]:
        baseline = self.learned.get(key)
        out: dict[str, Any] = {"service": key[0], "operation": key[1], "view": key[2]}
        out["windows"] = len(baseline) if baseline else 0
        if baseline and len(baseline):
            calls, errors = baseline.totals()
            out["expected"] = {"errorRatio": round(errors / calls, 5) if calls else 0.0}
        return out
