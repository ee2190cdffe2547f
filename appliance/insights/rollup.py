"""Insights over time: every finished trace analysed once, its patterns counted per operation and
hour, and an alert when a pattern becomes frequent for an operation.

The rollup follows committed spans by cursor, as the anomaly engine does, but it needs whole
traces: a trace is analysed once no span of it has arrived for ``SETTLE_S`` seconds. Its patterns
are counted on the operation each finding is about (the parent span of an N+1, say), beside how
many traces had that operation at all, so a rate can be read. Counts land in ``insight_counts``
(per hour) and in event-time windows of ``WINDOW_US``; when the event-time watermark closes a
window, ``PatternDetector`` compares each (pattern, operation)'s rate in it with the hour before
and raises alerts of kind ``pattern`` through the engine's alert lifecycle (``AlertManager``) and
alert table, so they appear in ``/alerts`` and ``/api/tracebox/alerts`` beside the others.

Load: analysing a trace costs ~15 µs of CPU per span, a large share of a core at tens of thousands of
spans per second. The rollup has a budget of spans per second (``spans_per_s``); when more settle,
it analyses a uniform sample of traces chosen by a hash of the trace id, and the hourly counts
weigh each analysed trace by the inverse of its chance (Horvitz-Thompson), so they estimate all
traces. The detector judges the sample's own counts: its rates are the same, and its significance
test stays honest about how many traces were actually seen.

Restarts: counts, analysed trace ids, the detector's state and the cursor are written in one
transaction. The cursor stays behind the first span of any trace still settling, so those spans
are read again after a restart; traces counted already are recognised and skipped. Spans arriving
after their trace was analysed are not analysed again.
"""

from __future__ import annotations

import asyncio
import logging
import math
import pickle
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import apsw

from tracebox.appliance.background import repeat
from tracebox.appliance.insights import store as istore
from tracebox.appliance.insights.analyse import CRITICAL_PATH, Finding, analyse
from tracebox.appliance.insights.settling import Settling
from tracebox.appliance.model import Span
from tracebox.appliance.store.rows import SPAN_COLUMNS, span_from_row
from tracebox.appliance.trace import merge_trace
from tracebox.appliance.workers import read_connection

log = logging.getLogger(__name__)

WINDOW_US = 300_000_000  # five minutes of event time
LATENESS_US = 60_000_000
SETTLE_S = 5.0
BATCH_ROWS = 5000
MAX_PENDING = 50_000  # traces waiting to settle; beyond it the oldest are analysed at once
#: Traces analysed per call into the engine's process: their spans are in memory at once there, and
#: the engine's own steps run between calls. Small calls keep that process's heap small: analysing
#: 300k spans' traces in-process peaked at 70 MB with 500 a call, 59 MB with 100.
ANALYSE_TRACES = 100
IDLE_S = 1.0
#: Spans analysed per second at most, unless configured: ~100 demo traces a second, 30 ms of CPU,
#: which still gives the five-minute windows tens of thousands of traces. Bursts of up to
#: ``BURST_S`` seconds' worth (a test run, a replay of a few thousand traces) are analysed whole.
SPANS_PER_S = 2_000
BURST_S = 10
SNAPSHOT_MAGIC = b"tracebox-insights/1\n"
KIND = "pattern"

Op = tuple[str, str]  # (service, operation)


@dataclass(frozen=True, slots=True)
class RollupConfig:
    baseline_windows: int = 12  # one hour of five-minute windows
    min_baseline_traces: int = 100  # traces of the operation in the baseline before it is judged
    min_count: int = 5  # traces with the pattern in the window
    min_rate: float = 0.1
    min_ratio: float = 3.0  # the window's rate over the baseline's
    alpha: float = 1e-6  # binomial tail of the window's count under the baseline rate
    trace_examples: int = 5


@dataclass(slots=True)
class WindowCounts:
    """One window: traces per operation, and per (pattern, operation) traces, time at stake, examples."""

    ops: dict[Op, int] = field(default_factory=dict)
    patterns: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)

    def add_trace(
        self,
        ts: int,
        ops: Iterable[Op],
        patterns: Iterable[tuple[str, str, str, int]],
        trace_id: str,
    ) -> None:
        for op in set(ops):
            self.ops[op] = self.ops.get(op, 0) + 1
        seen: set[tuple[str, str, str]] = set()
        for kind, service, operation, stake in patterns:
            key = (kind, service, operation)
            entry = self.patterns.get(key)
            if entry is None:
                entry = self.patterns[key] = [0, 0, []]
            entry[1] += stake
            if key not in seen:
                seen.add(key)
                entry[0] += 1
                if len(entry[2]) < 5:
                    entry[2].append(trace_id)
            if (service, operation) not in self.ops:
                self.ops[(service, operation)] = 1


class PatternDetector:
    """Per (pattern, operation): alert when the share of the operation's traces showing the
    pattern jumps against the hour before (significant, several times the old rate, and frequent)."""

    def __init__(self, config: RollupConfig) -> None:
        from tracebox.detectors.alerts import AlertManager
        from tracebox.detectors.config import EngineConfig

        self.config = config
        self.history: dict[Op, deque[tuple[int, dict[str, int]]]] = {}
        self.alerts = AlertManager(EngineConfig(fire_after={KIND: 1}))

    def observe(self, start: int, counts: WindowCounts) -> list:
        from tracebox.detectors.finding import ANOMALOUS, ELEVATED, NORMAL
        from tracebox.detectors.finding import Finding as EngineFinding
        from tracebox.detectors.stats import binomial_tail

        cfg = self.config
        findings = []
        keys = set(counts.patterns) | {
            (kind, *op) for op, hist in self.history.items() for _, kinds in hist for kind in kinds
        }
        for kind, service, operation in keys:
            op = (service, operation)
            n = counts.ops.get(op, 0)
            if n == 0:
                continue
            k, stake, examples = counts.patterns.get((kind, service, operation), (0, 0, []))
            hist = self.history.get(op, ())
            base_n = sum(h[0] for h in hist)
            base_k = sum(h[1].get(kind, 0) for h in hist)
            if base_n < cfg.min_baseline_traces:
                continue  # still learning this operation
            p0 = (base_k + 0.5) / (base_n + 1)
            rate = k / n
            p = binomial_tail(k, n, p0) if k else 1.0
            if k >= cfg.min_count and rate >= cfg.min_rate and rate >= cfg.min_ratio * p0 and p <= cfg.alpha:
                state = ANOMALOUS
            elif rate < max(cfg.min_rate, cfg.min_ratio * p0) / 2 or p > math.sqrt(cfg.alpha):
                state = NORMAL
            else:
                state = ELEVATED
            findings.append(
                EngineFinding(
                    kind=KIND,
                    service=service,
                    operation=operation,
                    state=state,
                    score=round(min(50.0, -math.log10(max(p, 1e-300))), 2),
                    expected={"rate": round(p0, 4), "traces": base_n, "count": base_k},
                    observed={"rate": round(rate, 4), "traces": n, "count": k, "atStakeUs": stake},
                    trace_ids=list(examples)[: cfg.trace_examples],
                    labels={"view": kind, "pattern": kind},
                )
            )
        for op, n in counts.ops.items():
            hist = self.history.setdefault(op, deque(maxlen=cfg.baseline_windows))
            kinds = {kind: entry[0] for (kind, s, o), entry in counts.patterns.items() if (s, o) == op}
            hist.append((n, kinds))
        return self.alerts.observe({KIND}, start, start + WINDOW_US, findings)


def _patterns(findings: list[Finding]) -> list[tuple[str, str, str, int]]:
    return [(f.kind, f.service, f.operation, f.at_stake_us) for f in findings if f.kind != CRITICAL_PATH]


def sampled(low: int, share: float) -> bool:
    """Whether the trace with this low 64-bit id is in a uniform ``share`` of all traces (Fibonacci
    hashing, so sequential ids spread too)."""
    return share >= 1.0 or ((low * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF) < share * 2.0**64


def analyse_settled(
    path: str, lows: list[int], strict: bool, baseline: dict | None
) -> list[tuple[str, int, set[Op], list[tuple[str, str, str, int]]]]:
    """(trace id, start, operations, patterns) of the traces not analysed yet among ``lows``.

    Runs in the engine's process (see ``InsightRollup``), on that process's read connection.
    """
    conn = read_connection(path)
    by_trace: list[tuple[str, list[Span]]] = []
    for low in lows:
        groups: dict[str, list[Span]] = {}
        for row in conn.execute(f"SELECT {SPAN_COLUMNS} FROM spans WHERE trace_low = ? ORDER BY id", (low,)):
            span = span_from_row(*row)
            groups.setdefault(span["traceId"] if strict else "", []).append(span)
        for spans in groups.values():
            by_trace.append((spans[0]["traceId"], merge_trace(spans, strict_trace_id=strict)))
    known = istore.analysed(conn, [trace_id for trace_id, _ in by_trace])
    costs = istore.llm_costs(conn, [trace_id for trace_id, _ in by_trace]) if baseline else {}
    out = []
    for trace_id, spans in by_trace:
        if trace_id in known:
            continue
        findings = analyse(spans, llm_baseline=baseline, llm_costs=costs.get(trace_id), critical=False)
        start = min((s.get("timestamp") or 0 for s in spans), default=0)
        out.append((trace_id, start, _ops(spans), _patterns(findings)))
    return out


def _ops(spans: list[Span]) -> set[Op]:
    ops = set()
    for span in spans:
        local = span.get("localEndpoint")
        ops.add(((local.get("serviceName") if local else None) or "unknown", span.get("name") or ""))
    return ops


class _State:
    """What survives a restart (pickled into ``insight_state``)."""

    def __init__(self, config: RollupConfig) -> None:
        self.detector = PatternDetector(config)
        self.windows: dict[int, WindowCounts] = {}
        self.next_window: int | None = None
        self.max_ts = 0


Beside = Callable[..., Awaitable[Any]]


class InsightRollup:
    """Counts the patterns of settled traces per operation and hour, and alerts on a rise.

    ``beside(fn, *args)`` runs a function in the anomaly engine's process: analysing every trace
    is Python work that would otherwise take turns with ingest for the server's interpreter lock.
    ``on_changes`` gets the alert changes once they are saved (the notifier sends them on).
    """

    def __init__(
        self,
        store: Any,
        beside: Beside,
        config: RollupConfig | None = None,
        strict: bool = True,
        on_changes: Callable[[list], Awaitable[None]] | None = None,
        spans_per_s: float = SPANS_PER_S,
    ) -> None:
        self.store = store
        self._beside = beside
        self._on_changes = on_changes
        self.config = config or RollupConfig()
        self.strict = strict
        self.state = _State(self.config)
        self.cursor = 0  # saved: a restart reads again from here
        self.read_cursor = 0
        self.pending = Settling()
        self.spans_per_s = spans_per_s  # 0: analyse every trace
        self.allowance = float(spans_per_s * BURST_S)  # spans that may be analysed now (a token bucket)
        self.allowance_at: float | None = None
        self.share = 1.0  # of the traces that settled in the last step, the share analysed
        self.skipped = 0
        self.baseline: dict | None = None
        self.baseline_at = 0.0
        self.traces = 0
        self.errors = 0
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        from tracebox.detectors.runner import SCHEMA as ENGINE_SCHEMA

        await self.store.ensure_schema("detectors", ENGINE_SCHEMA)  # the alerts table
        await self.store.ensure_schema("insights", istore.SCHEMA)
        saved = await self.store.read(istore.load_state)
        if saved is not None:
            cursor, snapshot = saved
            try:
                if not snapshot.startswith(SNAPSHOT_MAGIC):
                    raise ValueError("not a snapshot of this version")
                self.state = pickle.loads(zlib.decompress(snapshot[len(SNAPSHOT_MAGIC) :]))
                self.cursor = self.read_cursor = cursor
            except Exception as exc:
                log.warning("insights snapshot not usable (%s); starting from the newest spans", exc)
                self.cursor = self.read_cursor = self.store.consumer.last_id
        self._task = asyncio.create_task(self._run(), name="tracebox-insights")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        await repeat(self.step, self._stopping, IDLE_S, "insights rollup step", self._failed)

    def _failed(self) -> None:
        self.errors += 1

    async def step(self, now: float | None = None) -> bool:
        """Read new spans, analyse the traces that settled, close windows; False when idle."""
        now = time.monotonic() if now is None else now
        rows, ready = await self.store.read(self._follow, now)
        if not rows and not ready:
            return False
        if now - self.baseline_at > 300 or self.baseline is None:
            self.baseline = await self.store.read(_baseline, self.state.max_ts)
            self.baseline_at = now
        share = self._share(now, self.pending.spans(ready))
        chosen = [low for low in ready if sampled(low, share)]
        self.allowance -= self.pending.spans(chosen)
        self.share = share
        self.skipped += len(ready) - len(chosen)
        done = []
        for start in range(0, len(chosen), ANALYSE_TRACES):  # bounded: each call holds its traces' spans
            lows = chosen[start : start + ANALYSE_TRACES]
            done += await self._beside(
                analyse_settled, str(self.store.path), lows, self.strict, self.baseline
            )
        self.pending.remove(ready)
        counts_rows, trace_rows = self._count(done, 1.0 / share if share else 0.0)  # 0: none analysed
        changes = self._close_windows()
        # the restart point: before the first span of any trace still settling
        first = self.pending.first_row_id()
        cursor = first - 1 if first is not None else self.read_cursor
        snapshot = SNAPSHOT_MAGIC + zlib.compress(
            pickle.dumps(self.state, protocol=pickle.HIGHEST_PROTOCOL), 1
        )
        alerts = [c.alert for c in changes]

        def commit(conn: apsw.Connection) -> None:
            from tracebox.detectors.alert_store import upsert_alerts

            with conn:
                istore.record(conn, counts_rows, trace_rows)
                if alerts:
                    upsert_alerts(conn, alerts)
                istore.save_state(conn, cursor, snapshot)

        await self.store.write(commit)
        self.cursor = cursor
        self.traces += len(trace_rows)
        if changes and self._on_changes is not None:
            await self._on_changes(changes)
        return True

    def _follow(self, conn: apsw.Connection, now: float) -> tuple[int, list[int]]:
        """In a reader thread, off the event loop: file the rows committed since the last step;
        return how many there were and the traces that settled."""
        groups = _read_after(conn, self.read_cursor, BATCH_ROWS)
        if groups:
            self.read_cursor = groups[-1][2]
        self.state.max_ts = max(self.state.max_ts, self.pending.see(groups, now))
        return len(groups), self.pending.settled(now, SETTLE_S, MAX_PENDING)

    def _share(self, now: float, spans: int) -> float:
        """The share of ``spans`` (settled just now) that the budget lets through."""
        if not self.spans_per_s or not spans:
            return 1.0
        if self.allowance_at is not None:
            refill = (now - self.allowance_at) * self.spans_per_s
            self.allowance = min(float(self.spans_per_s * BURST_S), self.allowance + refill)
        self.allowance_at = now
        return min(1.0, max(self.allowance, 0.0) / spans)

    def _count(self, done: list, weight: float) -> tuple[list[tuple], list[tuple[str, int, str]]]:
        """Hourly rows (counts weighted by ``weight``, the inverse of the traces' chance of being
        analysed) and the analysed traces; the windows count the sample itself."""
        per_hour: dict[tuple[str, str, str, int], list[Any]] = {}
        traces = []
        state = self.state
        for trace_id, first_ts, ops, patterns in done:
            start = first_ts or state.max_ts
            hour = start - start % istore.HOUR_US
            for service, operation in ops:
                entry = per_hour.setdefault((service, operation, "", hour), [0, 0, 0, None])
                entry[0] += weight
            seen = set()
            for kind, service, operation, stake in patterns:
                entry = per_hour.setdefault((service, operation, kind, hour), [0, 0, 0, trace_id])
                if (kind, service, operation) not in seen:
                    seen.add((kind, service, operation))
                    entry[0] += weight
                entry[1] += weight
                entry[2] += stake * weight
            index = start // WINDOW_US
            if state.next_window is None:
                state.next_window = index
            index = max(index, state.next_window)  # late: counted in the oldest open window
            window = state.windows.get(index)
            if window is None:
                window = state.windows[index] = WindowCounts()
            window.add_trace(start, ops, patterns, trace_id)
            traces.append((trace_id, start, ",".join(sorted({p[0] for p in patterns}))))
        rows = [(s, o, k, h, e[0], e[1], e[2], e[3]) for (s, o, k, h), e in per_hour.items()]
        return rows, traces

    def _close_windows(self) -> list:
        state = self.state
        if state.next_window is None:
            return []
        watermark = state.max_ts - LATENESS_US
        settling = self.pending.earliest_start()
        changes: list = []
        while (state.next_window + 1) * WINDOW_US <= watermark:
            if settling is not None and settling < (state.next_window + 1) * WINDOW_US:
                break  # a trace that started in this window is still coming in
            counts = state.windows.pop(state.next_window, WindowCounts())
            changes += state.detector.observe(state.next_window * WINDOW_US, counts)
            state.next_window += 1
            if not state.windows and state.next_window * WINDOW_US < watermark - 24 * istore.HOUR_US:
                state.next_window = (watermark // WINDOW_US) - 1  # a long silence: skip ahead
        return changes

    def status(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "pendingTraces": len(self.pending),
            "tracesAnalysed": self.traces,
            "tracesSkipped": self.skipped,
            "analysedShare": round(self.share, 4),
            "spansPerSecondBudget": self.spans_per_s,
            "errors": self.errors,
            "watermark": max(0, self.state.max_ts - LATENESS_US),
        }


def _read_after(conn: apsw.Connection, cursor: int, limit: int) -> list[tuple]:
    """The next ``limit`` rows after ``cursor`` by trace, as ``Settling.see`` takes them: a trace has
    ~20 spans, so grouping them in SQL spares the server's interpreter most of a loop per span."""
    return conn.execute(
        "SELECT trace_low, min(id), max(id), count(*), min(ts), max(ts)"
        " FROM (SELECT id, trace_low, ts FROM spans WHERE id > ? ORDER BY id LIMIT ?)"
        " GROUP BY trace_low ORDER BY max(id)",
        (cursor, limit),
    ).fetchall()


def _baseline(conn: apsw.Connection, end_us: int) -> dict | None:
    try:
        return dict(istore.llm_baseline(conn, end_us or time.time_ns() // 1000))
    except apsw.SQLError:
        return None
