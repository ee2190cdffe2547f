"""Evaluation harness: labelled synthetic traffic through the Engine, scored per alert kind.

    python -m tracebox.detectors.evaluate            # 24 h of event time, a fault every 36 min
    python -m tracebox.detectors.evaluate --quick    # 3 h, each fault type once, 14 min apart (CI)

An alert is a true positive when its kind and service match a fault's and it started between the
fault's start (less one window) and its end plus a grace period; every other alert is false. A
fault is detected when at least one alert matches it; the delay is from the fault's start to the
event time its first matching alert fired.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from typing import Any

from .config import EngineConfig
from .engine import US, Engine, span_record
from .synth import DAY, FAULT_TYPES, Fault, Traffic, schedule

KINDS = ("latency", "error", "token_cost", "finish_reason")
GRACE_S = 120
TARGETS = {"recall": 0.9, "precision": 0.8, "false_per_hour": 1.0, "median_delay_s": 60.0}


@dataclass
class KindScore:
    faults: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    false_per_hour: float = 0.0
    median_delay_s: float | None = None

    @property
    def recall(self) -> float:
        return self.detected / self.faults if self.faults else 1.0

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    def meets_targets(self) -> bool:
        delay_ok = self.median_delay_s is None or self.median_delay_s < TARGETS["median_delay_s"]
        return (
            self.recall >= TARGETS["recall"]
            and self.precision >= TARGETS["precision"]
            and self.false_per_hour <= TARGETS["false_per_hour"]
            and delay_ok
        )


@dataclass
class Report:
    scores: dict[str, KindScore]
    spans: int
    spans_per_second: float
    hours: float
    alerts: list[dict[str, Any]]

    def meets_targets(self) -> bool:
        return all(score.meets_targets() for score in self.scores.values())


def run(
    hours: float, seed: int = 7, config: EngineConfig | None = None, batch: int = 1000, gap_s: int = 480
) -> Report:
    start = 1_700_000_000 // DAY * DAY  # midnight, so the daily curve starts at its trough
    warmup_s = 45 * 60
    faults = schedule(start, hours, warmup_s, length_s=360, gap_s=gap_s)
    engine = Engine(config)
    alerts: dict[str, dict[str, Any]] = {}
    buffer: list = []
    busy = 0.0
    spans = 0

    def feed() -> None:
        nonlocal busy
        began = time.perf_counter()
        changes = engine.process(buffer)
        busy += time.perf_counter() - began
        for change in changes:
            alerts[change.alert["id"]] = change.alert
        buffer.clear()

    for span, llm in Traffic(start, hours, faults, seed=seed).spans():
        buffer.append(span_record(span, llm))
        spans += 1
        if len(buffer) >= batch:
            feed()
    feed()
    found = list(alerts.values())
    return Report(score(faults, found, hours * 3600 - warmup_s), spans, spans / busy, hours, found)


def throughput(minutes: float = 10, scale: float = 40, batch: int = 2000) -> tuple[int, float]:
    """(spans, spans/s) for dense traffic (~1,900 spans per second of event time), where the per-span
    path rather than the per-window work sets the pace."""
    start = 1_700_000_000 // DAY * DAY
    spans = [span_record(span, llm) for span, llm in Traffic(start, minutes / 60, [], scale=scale).spans()]
    engine = Engine()
    began = time.perf_counter()
    for i in range(0, len(spans), batch):
        engine.process(spans[i : i + batch])
    return len(spans), len(spans) / (time.perf_counter() - began)


def _matches(alert: dict[str, Any], fault: Fault, window_us: int) -> bool:
    return (
        alert["kind"] in fault.kinds
        and alert["service"] == fault.service
        and fault.start * US - window_us <= alert["startedAt"] <= (fault.end + GRACE_S) * US
    )


def score(
    faults: list[Fault], alerts: list[dict[str, Any]], judged_s: float, window_us: int = 10 * US
) -> dict[str, KindScore]:
    normal_hours = max(judged_s - sum(f.end - f.start + GRACE_S for f in faults), 1.0) / 3600
    scores = {}
    for kind in KINDS:
        s = KindScore()
        own = [a for a in alerts if a["kind"] == kind]
        s.alerts = len(own)
        s.true_alerts = sum(1 for a in own if any(_matches(a, f, window_us) for f in faults))
        s.false_per_hour = (s.alerts - s.true_alerts) / normal_hours
        delays = []
        for fault in (f for f in faults if kind in f.kinds):
            s.faults += 1
            fired = [a["firedAt"] for a in own if _matches(a, fault, window_us)]
            if fired:
                s.detected += 1
                delays.append(max(min(fired) / US - fault.start, 0.0))
        s.median_delay_s = statistics.median(delays) if delays else None
        scores[kind] = s
    return scores


def render(report: Report) -> str:
    lines = [
        f"{report.hours:g} h of event time, {report.spans} spans, engine {report.spans_per_second:,.0f} spans/s "
        f"(at this traffic the per-window work dominates; --throughput measures the per-span rate)",
        f"faults injected: {', '.join(FAULT_TYPES)}",
        "",
        f"{'kind':<14}{'faults':>7}{'found':>7}{'alerts':>8}{'recall':>8}{'precision':>11}{'F1':>7}"
        f"{'false/h':>9}{'delay s':>9}  targets",
    ]
    for kind, s in report.scores.items():
        delay = f"{s.median_delay_s:.0f}" if s.median_delay_s is not None else "-"
        lines.append(
            f"{kind:<14}{s.faults:>7}{s.detected:>7}{s.alerts:>8}{s.recall:>8.2f}{s.precision:>11.2f}{s.f1:>7.2f}"
            f"{s.false_per_hour:>9.2f}{delay:>9}  {'met' if s.meets_targets() else 'MISSED'}"
        )
    lines.append("")
    lines.append("all targets met" if report.meets_targets() else "targets MISSED")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tracebox.detectors.evaluate", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="3 h of event time, each fault type once")
    parser.add_argument("--hours", type=float, help="hours of event time (default 24, or 3 with --quick)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--throughput", action="store_true", help="also measure spans/s on dense traffic")
    parser.add_argument("--show-alerts", action="store_true", help="print every alert")
    args = parser.parse_args(argv)
    hours = args.hours or (3.0 if args.quick else 24.0)
    report = run(hours, seed=args.seed, gap_s=480 if args.quick else 1800)
    if args.show_alerts:
        for a in sorted(report.alerts, key=lambda a: a["startedAt"]):
            print(
                a["kind"],
                a["service"],
                a["operation"],
                a["labels"].get("view"),
                a["startedAt"],
                a["firedAt"],
                a["score"],
            )
    print(render(report))
    if args.throughput:
        count, rate = throughput()
        print(f"throughput: {count} spans of dense traffic at {rate:,.0f} spans/s on one core")
    return 0 if report.meets_targets() else 1


if __name__ == "__main__":
    raise SystemExit(main())
