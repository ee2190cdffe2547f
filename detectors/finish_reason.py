"""The mix of finish reasons per (service, route, model) against its learned mix: a G-test.

A shift fires only if it is significant, at least ``finish_min_shift`` in one reason's share, and
that share at least doubled, so a jump in ``length`` (max_tokens too low) or ``content_filter``
(prompt attacks) is flagged while the ordinary wobble of a busy route is not.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from .accumulators import LlmCall
from .baseline import MixBaseline, pool_recent
from .config import EngineConfig
from .detector import Detector
from .finding import ANOMALOUS, ELEVATED, NORMAL, Finding
from .stats import g_test, surprise

MixKey = tuple[str, str, str]  # (service, route, model)
SMOOTHING = 0.5  # pseudo-count per reason, so a reason never seen in the baseline is merely rare
MIN_BASELINE_CALLS = 100


class MixWindow:
    __slots__ = ("counts", "examples")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.examples: dict[str, list[str]] = {}

    def add(self, call: LlmCall, keep: int) -> None:
        for reason in call.finish_reasons:
            self.counts[reason] += 1
            traces = self.examples.setdefault(reason, [])
            if len(traces) < keep:
                traces.append(call.trace_id)


def _size(window: MixWindow | None) -> int:
    return window.counts.total() if window else 0


class FinishReasonDetector(Detector[MixKey, MixWindow]):
    kind = "finish_reason"

    def __init__(self, config: EngineConfig) -> None:
        super().__init__(config)
        self.learned: dict[MixKey, MixBaseline] = {}
        self.calm: dict[MixKey, int] = {}  # evaluations in a row judged normal (or not judged)

    def evaluate(self, calls: list[LlmCall]) -> list[Finding]:
        cfg = self.config
        closed: dict[MixKey, MixWindow] = {}
        for call in calls:
            if call.finish_reasons:
                key = (call.service, call.route or call.name, call.model)
                window = closed.get(key)
                if window is None:
                    window = closed[key] = MixWindow()
                window.add(call, cfg.trace_examples)
        findings = []
        for key, recent in self.windows(closed):
            baseline = self.learned.get(key)
            if baseline is None:
                baseline = self.learned[key] = MixBaseline(cfg.baseline_windows)
            settings = self.settings(key[0], key[1])
            finding = None
            pool = pool_recent(recent, settings.min_traffic or cfg.finish_min_traffic, _size)
            learned = (
                len(baseline) >= cfg.min_baseline_windows and baseline.total.total() >= MIN_BASELINE_CALLS
            )
            if self.judged(key, settings, pool, learned):
                finding = self._judge(key, baseline, [w for w in pool if w], settings.sensitivity)
                findings.append(finding)
            # Learn a window only once it leaves the pool with every evaluation it was part of
            # normal: a pool mixing the first faulty windows with older ones can still look normal.
            calm = self.calm[key] = (
                self.calm.get(key, 0) + 1 if finding is None or finding.state == NORMAL else 0
            )
            if len(recent) == recent.maxlen and calm >= len(recent):
                baseline.add(recent[0].counts if recent[0] else Counter())
        return findings

    def _judge(
        self, key: MixKey, baseline: MixBaseline, windows: list[MixWindow], sensitivity: float
    ) -> Finding:
        cfg = self.config
        seen: Counter[str] = Counter()
        for w in windows:
            seen.update(w.counts)
        reasons = sorted(set(seen) | set(baseline.total))
        base = [baseline.total[r] + SMOOTHING for r in reasons]
        total = sum(base)
        expected = [b / total for b in base]
        observed_counts = [float(seen[r]) for r in reasons]
        calls = sum(observed_counts)
        observed = [c / calls for c in observed_counts]
        p = g_test(observed_counts, expected)
        rise = [o - e for o, e in zip(observed, expected, strict=True)]
        top = max(range(len(rise)), key=rise.__getitem__)  # the first of equal rises, as argmax
        shift = rise[top]
        alpha = cfg.finish_alpha ** (1 / sensitivity)
        if p < alpha and shift >= cfg.finish_min_shift and observed[top] >= 2 * expected[top]:
            state = ANOMALOUS
        elif p > 1e-3 or shift < cfg.finish_min_shift / 2:
            state = NORMAL
        else:
            state = ELEVATED
        reason = reasons[top]
        return Finding(
            kind=self.kind,
            service=key[0],
            operation=key[1],
            state=state,
            score=round(surprise(p), 2),
            expected={"mix": _mix(reasons, expected), "calls": int(baseline.total.total())},
            observed={"mix": _mix(reasons, observed), "calls": int(calls), "pValue": p},
            trace_ids=[t for w in windows for t in w.examples.get(reason, ())][: cfg.trace_examples],
            labels={"view": "route", "model": key[2], "reason": reason},
        )

    def describe(self, key: MixKey) -> dict[str, Any]:
        baseline = self.learned.get(key)
        return {
            "service": key[0],
            "operation": key[1],
            "model": key[2],
            "windows": len(baseline) if baseline else 0,
        }


def _mix(reasons: list[str], shares: list[float]) -> dict[str, float]:
    return {r: round(float(s), 4) for r, s in zip(reasons, shares, strict=True)}
