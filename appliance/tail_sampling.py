"""Tail-based sampling: decide per whole trace which ones to keep, and delete the rest soon after.

Like the anomaly engine, the sampler reads spans the store has committed, in commit order, after a
cursor of its own, so ingest and its acknowledgements are untouched. Spans are gathered per trace
(by the low 64 bits of the trace id, the store's grouping key); a trace is complete when no new span
came for ``quiet_seconds`` or ``max_trace_age_seconds`` after its first span (the decision wait of
OpenTelemetry's tail-sampling processor). A complete trace is kept when any policy says so: an
error, debug, an alert pointing to it, an attribute rule, an LLM call above a cost, a root slower
than a threshold or than its operation's learned quantile; otherwise it is kept with probability
``rate``, decided on the trace id by Zipkin's collector sampler, so every tracebox agrees.

A dropped trace is deleted only once the anomaly engine's *persisted* cursor has passed all of its
spans, so the engine has learned from it and, after a crash, its replay from the last snapshot sees
the same spans: sampling never blinds the detectors. Deletion goes through ``Store.write`` in small
batches, between ingest's commits. Late spans of a decided trace follow the decision.

The sampler persists its cursor as a low watermark (below every span of an undecided or
undeleted trace) with its decisions, so a restart re-reads what it still needs and decides nothing
twice. The same read loop feeds the adaptive sampler (``adaptive_sampling``) with root spans.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from tracebox.appliance.background import repeat
from tracebox.appliance.sampling import CollectorSampler
from tracebox.appliance.sampling_config import SamplingConfig
from tracebox.appliance.store import Store
from tracebox.appliance.store import sampling as db
from tracebox.appliance.store.rows import FLAG_DEBUG, FLAG_ERROR

log = logging.getLogger(__name__)

READ_BATCH = 5000
SAVE_QUANTILES_EVERY_S = 60.0


class LatencySketch:
    """Durations in log-spaced buckets (2% wide): a quantile within 2%, in a few hundred integers."""

    GAMMA = 1.02
    _LOG = math.log(GAMMA)

    def __init__(self, buckets: dict[int, int] | None = None) -> None:
        self.buckets: dict[int, int] = buckets or {}
        self.count = sum(self.buckets.values())
        self._cache: dict[float, float] = {}
        self._since_cache = 0

    def add(self, duration_us: int) -> None:
        index = math.ceil(math.log(max(duration_us, 1)) / self._LOG)
        self.buckets[index] = self.buckets.get(index, 0) + 1
        self.count += 1
        self._since_cache += 1
        if self._since_cache >= max(10, self.count // 50):
            self._cache.clear()

    def quantile(self, q: float) -> float:
        found = self._cache.get(q)
        if found is None:
            rank, seen = q * self.count, 0
            found = 0.0
            for index in sorted(self.buckets):
                seen += self.buckets[index]
                if seen >= rank:
                    found = self.GAMMA**index
                    break
            self._cache[q] = found
            self._since_cache = 0
        return found


@dataclass(slots=True)
class PendingTrace:
    trace_id: str
    first_seen: float
    last_seen: float
    span_ids: list[int] = field(default_factory=list)
    services: set[str] = field(default_factory=set)
    flags: int = 0
    attribute: str | None = None
    max_cost: float = 0.0
    root: tuple[str, str, int] | None = None  # (service, name, duration µs)
    start_us: int | None = None
    end_us: int | None = None

    def add(self, row: db.SpanRow, rules: Iterable, now: float) -> None:
        self.last_seen = now
        self.span_ids.append(row.id)
        if row.service:
            self.services.add(row.service)
        self.flags |= row.flags
        if row.cost_usd and row.cost_usd > self.max_cost:
            self.max_cost = row.cost_usd
        if row.tags and self.attribute is None:
            for rule in rules:
                if rule.matches(row.tags):
                    self.attribute = str(rule)
                    break
        if row.parent_id is None and row.duration:
            self.root = (row.service or "", row.name or "", row.duration)
        if row.ts:
            end = row.ts + (row.duration or 0)
            self.start_us = row.ts if self.start_us is None else min(self.start_us, row.ts)
            self.end_us = end if self.end_us is None else max(self.end_us, end)

    @property
    def duration_us(self) -> int:
        if self.root is not None:
            return self.root[2]
        if self.start_us is None or self.end_us is None:
            return 0
        return self.end_us - self.start_us


@dataclass(slots=True)
class Doomed:
    """Spans of a dropped trace waiting for the engine's cursor to pass them."""

    decided: db.Decided
    span_ids: list[int]

    @property
    def max_id(self) -> int:
        return self.span_ids[-1]


class TailSampler:
    def __init__(
        self,
        store: Store,
        config: SamplingConfig,
        *,
        engine: bool,
        adaptive: Any = None,
        clock=time.monotonic,
        wall=time.time,
    ) -> None:
        self.store = store
        self.config = config
        self.engine = engine  # whether the anomaly engine runs (and so gates deletion)
        self.adaptive = adaptive  # fed when adaptive sampling is on
        self.strategies: Any = adaptive  # what the remote-sampling endpoint serves
        self.clock, self.wall = clock, wall
        self.keep_share = CollectorSampler(config.rate)
        self.cursor = 0  # the last span read
        self.pending: dict[int, PendingTrace] = {}
        self.doomed: deque[Doomed] = deque()
        self.decisions: dict[int, bool] = {}
        self._decided_order: deque[tuple[float, int]] = deque()
        self.sketches: dict[tuple[str, str], LatencySketch] = {}
        self._saved_sketches_at = 0.0
        self.engine_cursor: int | None = None
        self.errors = 0
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    @property
    def remember_seconds(self) -> float:
        return max(600.0, 4 * self.config.max_trace_age_seconds)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.store.ensure_schema("sampling", db.SCHEMA)
        cursor, decisions, sketches = await self.store.read(
            db.load_state, self.wall() - self.remember_seconds
        )
        if cursor is None:  # first run: start with the spans committed from now on
            cursor = self.store.consumer.last_id
        self.cursor = cursor
        now = self.wall()
        self.decisions = decisions
        self._decided_order = deque((now, low) for low in decisions)
        if sketches:
            with contextlib.suppress(Exception):
                for key, buckets in orjson.loads(sketches).items():
                    service, _, name = key.partition("\x00")
                    self.sketches[(service, name)] = LatencySketch({int(k): v for k, v in buckets.items()})
        self._task = asyncio.create_task(self._run(), name="tracebox-sampling")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        with contextlib.suppress(Exception):
            await self._record([], force_sketches=True)

    async def _run(self) -> None:
        interval = self.config.evaluation_interval_seconds
        await repeat(self.step, self._stopping, interval, "tail sampling step", self._failed)

    def _failed(self) -> None:
        self.errors += 1

    # -- one step --------------------------------------------------------------------------------

    async def step(self) -> bool:
        """Read new spans, decide complete traces, delete what may go; True when there is more to do."""
        rows = await self.store.read(db.read_after, self.cursor, READ_BATCH, self._with_tags)
        now = self.clock()
        for row in rows:
            self._take(row, now)
        if rows:
            self.cursor = rows[-1].id
        if self.adaptive is not None:
            self.adaptive.recompute(now)
        if not self.config.enabled:
            return len(rows) == READ_BATCH
        decided = await self._decide(now)
        await self._record(decided)
        deleted_all = await self._delete()
        return len(rows) == READ_BATCH or not deleted_all

    @property
    def _with_tags(self) -> bool:
        return bool(self.config.enabled and self.config.attributes) or self.adaptive is not None

    def _take(self, row: db.SpanRow, now: float) -> None:
        if self.adaptive is not None and row.parent_id is None:
            self.adaptive.observe(row.service or "", row.name or "", row.tags)
        if not self.config.enabled:
            return
        known = self.decisions.get(row.trace_low)
        if known is not None:  # a late span: it follows the trace's decision
            if not known:
                services = frozenset((row.service,)) if row.service else frozenset()
                self.doomed.append(Doomed(db.Decided(row.trace_low, False, "late", services), [row.id]))
            return
        trace = self.pending.get(row.trace_low)
        if trace is None:
            trace = self.pending[row.trace_low] = PendingTrace(row.trace_id, now, now)
        trace.add(row, self.config.attributes, now)

    async def _decide(self, now: float) -> list[tuple[db.Decided, PendingTrace]]:
        quiet, age = self.config.quiet_seconds, self.config.max_trace_age_seconds
        complete = [
            low for low, t in self.pending.items() if now - t.last_seen >= quiet or now - t.first_seen >= age
        ]
        if not complete:
            return []
        alerted = await self._alerted()
        out = []
        for low in complete:
            trace = self.pending.pop(low)
            reason = self.keep_reason(low, trace, alerted)
            decided = db.Decided(low, reason is not None, reason or "rest", frozenset(trace.services))
            out.append((decided, trace))
            if not decided.kept:
                self.doomed.append(Doomed(decided, trace.span_ids))
        return out

    async def _alerted(self) -> set[int]:
        if not (self.engine and self.config.keep_alerted):
            return set()
        return await self.store.read(db.alerted_traces)

    def keep_reason(self, low: int, trace: PendingTrace, alerted: set[int]) -> str | None:
        """The first policy that keeps the trace, or None; learns the root operation's latency."""
        c = self.config
        reason = None
        if trace.flags & FLAG_DEBUG:
            reason = "debug"
        elif c.keep_errors and trace.flags & FLAG_ERROR:
            reason = "error"
        elif low in alerted:
            reason = "alert"
        elif trace.attribute is not None:
            reason = "attribute"
        elif c.llm_cost_usd and trace.max_cost > c.llm_cost_usd:
            reason = "llm_cost"
        elif c.slow_ms and trace.duration_us > c.slow_ms * 1000:
            reason = "slow"
        if trace.root is not None and c.slow_quantile:
            service, name, duration = trace.root
            sketch = self.sketches.get((service, name))
            if sketch is None:
                sketch = self.sketches[(service, name)] = LatencySketch()
            if (
                reason is None
                and sketch.count >= c.min_samples
                and duration > sketch.quantile(c.slow_quantile)
            ):
                reason = "slow_quantile"
            sketch.add(duration)
        if reason is None and self.keep_share.is_sampled(trace.trace_id):
            reason = "rate"
        return reason

    async def _record(
        self, decided: list[tuple[db.Decided, PendingTrace]], force_sketches: bool = False
    ) -> None:
        wall = self.wall()
        for d, _ in decided:
            self.decisions[d.trace_low] = d.kept
            self._decided_order.append((wall, d.trace_low))
        forget = wall - self.remember_seconds
        forget_before = None
        while self._decided_order and self._decided_order[0][0] < forget:
            _, low = self._decided_order.popleft()
            self.decisions.pop(low, None)
            forget_before = forget
        sketches = None
        now = self.clock()
        if force_sketches or now - self._saved_sketches_at >= SAVE_QUANTILES_EVERY_S:
            sketches = orjson.dumps(
                {f"{s}\x00{n}": sk.buckets for (s, n), sk in self.sketches.items()},
                option=orjson.OPT_NON_STR_KEYS,
            )
            self._saved_sketches_at = now
        watermark = self.watermark()
        rows = [d for d, _ in decided]
        await self.store.write(lambda conn: db.record(conn, rows, wall, watermark, sketches, forget_before))

    def watermark(self) -> int:
        """The cursor to resume from after a restart: below every span still needed."""
        low = self.cursor
        for trace in self.pending.values():
            low = min(low, trace.span_ids[0] - 1)
        if self.doomed:
            low = min(low, min(d.span_ids[0] for d in self.doomed) - 1)
        return low

    async def _delete(self) -> bool:
        """Delete the dropped traces the engine has passed, one small batch; True when none is left."""
        if not self.doomed:
            return True
        if self.engine:
            self.engine_cursor = await self.store.read(db.engine_cursor)
            if self.engine_cursor is None:
                return True  # the engine has not saved yet: wait for it
        limit = self.engine_cursor if self.engine else self.cursor
        batch: list[Doomed] = []
        spans = 0
        for doomed in self.doomed:
            if spans >= self.config.delete_batch_spans:
                break
            if doomed.max_id <= limit:
                batch.append(doomed)
                spans += len(doomed.span_ids)
        if not batch:
            return True
        alerted = await self._alerted()  # an alert raised since the decision rescues its trace
        rescued = [d.decided for d in batch if d.decided.trace_low in alerted and d.decided.reason != "late"]
        for d in rescued:
            d.kept, d.reason = True, "alert"
            self.decisions[d.trace_low] = True
        ids = [i for d in batch if d.decided.trace_low not in alerted for i in d.span_ids]
        stored = await self.store.read(db.stored_spans, ids)
        await self.store.write(lambda conn: db.delete_spans(conn, ids, stored, rescued), weight=len(ids))
        chosen = {id(d) for d in batch}
        self.doomed = deque(d for d in self.doomed if id(d) not in chosen)
        return not any(d.max_id <= limit for d in self.doomed)

    def status(self) -> dict[str, Any]:
        return {
            "cursor": self.cursor,
            "engineCursor": self.engine_cursor,
            "pendingTraces": len(self.pending),
            "awaitingDeletion": sum(len(d.span_ids) for d in self.doomed),
            "errors": self.errors,
        }
