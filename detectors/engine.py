"""The anomaly engine: spans in commit order in, alert changes out, all in event time.

Per span the engine only files the duration, error flag and LLM numbers into the tumbling window of
the span's timestamp (O(1)); detectors run when the watermark (the newest timestamp seen minus the
allowed lateness) closes a window. Spans older than the oldest open window are counted as late and
counted in the oldest open window instead. Nothing reads the wall clock, so replaying a day gives the alerts living through it gave,
however the spans are split into batches.
"""

from __future__ import annotations

import pickle
import zlib
from sys import intern
from typing import Any

from tracebox.appliance.llm_rows import caller
from tracebox.appliance.model import local_service, remote_service

from .accumulators import LlmCall, LlmInput, OpWindow, llm_input
from .alerts import AlertChange, AlertManager
from .blame import blame_dependencies
from .clock import WindowClock
from .config import EngineConfig
from .detector import READY
from .errors import ErrorDetector
from .finding import Node
from .finish_reason import FinishReasonDetector
from .latency import LatencyDetector
from .lineage import Lineage
from .token_cost import TokenCostDetector

US = 1_000_000
SNAPSHOT_MAGIC = b"tracebox-engine/3\n"
SPAN_KINDS = frozenset(("latency", "error"))
LLM_KINDS = frozenset(("token_cost", "finish_reason"))

Span = dict[str, Any]

#: A span as the engine is fed it, in commit order: (store id, trace id, span id, parent id, kind,
#: name, local service, remote service, timestamp, duration, error, LLM call or None). The runner
#: reads these straight from the store's columns; ``span_record`` makes one of a Zipkin span.
SpanRecord = tuple[
    int,
    str,
    str,
    str | None,
    str | None,
    str | None,
    str | None,
    str | None,
    int | None,
    int | None,
    bool,
    LlmInput | None,
]


def span_record(span: Span, llm: dict[str, Any] | None) -> SpanRecord:
    """A Zipkin v2 span (with ``extract_llm``'s answer for it) as the engine reads it."""
    tags = span.get("tags") or {}
    return (
        0,
        span["traceId"],
        span["id"],
        span.get("parentId"),
        span.get("kind"),
        span.get("name"),
        local_service(span),
        remote_service(span),
        span.get("timestamp"),
        span.get("duration"),
        "error" in tags,  # as the store marks an error (rows.FLAG_ERROR); OTLP's status sets it too
        None
        if llm is None
        else llm_input(
            llm.get("request_model"),
            llm.get("response_model"),
            llm.get("input_tokens"),
            llm.get("cost_usd"),
            llm.get("finish_reasons") or (),
            *caller(tags),
        ),
    )


class _Deflating:
    """A file that compresses what is written to it, so a snapshot's pickle (megabytes at live
    rates) is never whole in memory beside its compressed form."""

    def __init__(self, prefix: bytes) -> None:
        self._parts = [prefix]
        self._zlib = zlib.compressobj(1)

    def write(self, data: bytes) -> int:
        self._parts.append(self._zlib.compress(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self._parts) + self._zlib.flush()


class Engine:
    def __init__(self, config: EngineConfig | None = None) -> None:
        cfg = self.config = config or EngineConfig()
        self._width = cfg.window_seconds * US
        self._lateness = cfg.lateness_seconds * US
        quiet = max(cfg.max_eval_windows, cfg.resolve_after, *cfg.fire_after.values()) + 1
        self._span_clock = WindowClock(self._width, 0, quiet)
        self._llm_clock = WindowClock(self._width, cfg.llm_wait_seconds * US, quiet)
        self._ops: dict[int, dict[Node, OpWindow]] = {}
        self._llm: dict[int, list[LlmCall]] = {}
        self._max_ts = 0
        self._due_at = 0
        self.lineage = Lineage()
        self.latency = LatencyDetector(cfg)
        self.errors = ErrorDetector(cfg)
        self.tokens = TokenCostDetector(cfg)
        self.finish = FinishReasonDetector(cfg)
        self.alerts = AlertManager(cfg)
        self.spans_processed = 0
        self.late_spans = 0
        self.skipped_spans = 0

    @property
    def watermark(self) -> int:
        """Event time (epoch µs) up to which spans are complete."""
        return max(self._max_ts - self._lateness, 0)

    def process(self, batch: list[SpanRecord]) -> list[AlertChange]:
        """Feed spans in commit order; return the alert changes."""
        changes: list[AlertChange] = []
        width = self._width
        ops = self._ops
        see = self.lineage.see
        for _, trace_id, span_id, parent_id, kind, name, service, remote, ts, duration, error, llm in batch:
            if not ts:
                self.skipped_spans += 1
                continue
            if self._span_clock.next is None:
                self._span_clock.accepts((ts - self._lateness) // width)
                self._llm_clock.accepts((ts - self._lateness) // width)
            if ts > self._max_ts:
                self._max_ts = ts
                if ts >= self._due_at:
                    self._advance(changes)
            index = ts // width
            if index < self._span_clock.next:  # type: ignore[operator]
                # Later than the watermark allows (a span longer than the lateness, ending after its
                # window closed): counted in the oldest open window rather than lost, so a very slow
                # operation still shows.
                self.late_spans += 1
                index = self._span_clock.next
            self.spans_processed += 1
            service = service or "unknown"
            name = name or "unknown"
            if kind == "SERVER" or kind == "CONSUMER":
                node = (service, name, "server")
            elif kind == "CLIENT" and remote:
                node = (remote, name, "client")
            else:
                node = (service, name, "local")
            window = ops.get(index)
            if window is None:
                window = ops[index] = {}
            acc = window.get(node)
            if acc is None:
                acc = window[node] = OpWindow()
            acc.count += 1
            if duration:
                acc.add_duration(duration, span_id)
                if duration > acc.slowest:
                    acc.slowest = duration
                    acc.slowest_trace = trace_id
            if error:
                acc.errors += 1
                if len(acc.error_traces) < 3:
                    acc.error_traces.append(trace_id)
            see(span_id, parent_id, node)
            if llm is not None:
                call = LlmCall(intern(service), intern(name), None, trace_id, *llm)
                self.lineage.place_llm(call, parent_id)
                self._llm.setdefault(max(ts // width, self._llm_clock.next), []).append(call)  # type: ignore[type-var]
        return changes

    def _advance(self, changes: list[AlertChange]) -> None:
        watermark = self.watermark
        for index in self._span_clock.due(watermark, list(self._ops)):
            closed = self._ops.pop(index, {})
            findings = self.latency.evaluate(closed) + self.errors.evaluate(closed)
            blame_dependencies(findings, self.lineage)
            changes += self._observe(SPAN_KINDS, index, findings)
        for index in self._llm_clock.due(watermark, list(self._llm)):
            calls = self._llm.pop(index, [])
            for call in calls:
                if call.route is None:  # its server span never came in time: the span alone names it
                    call.route = call.name
            findings = self.tokens.evaluate(calls) + self.finish.evaluate(calls)
            changes += self._observe(LLM_KINDS, index, findings)
        self._due_at = self._lateness + min(
            (clock.next + 1) * self._width + clock.delay
            for clock in (self._span_clock, self._llm_clock)
            if clock.next is not None
        )

    def _observe(self, kinds: frozenset[str], index: int, findings: list) -> list[AlertChange]:
        start = index * self._width
        return self.alerts.observe(set(kinds), start, start + self._width, findings)

    def status(self) -> dict[str, Any]:
        rows = self.baselines()
        return {
            "watermark": self.watermark,
            "spansProcessed": self.spans_processed,
            "lateSpans": self.late_spans,
            "skippedSpans": self.skipped_spans,
            "baselines": sum(1 for r in rows if r["status"] == READY),
            "baselinesTotal": len(rows),
            "openAlerts": len(self.alerts.open_alerts()),
        }

    def baselines(self) -> list[dict[str, Any]]:
        """Every baseline with its status: learning, ready, insufficient_traffic or muted."""
        return [row for d in self._detectors() for row in d.baselines()]

    def open_alerts(self) -> list[dict[str, Any]]:
        return self.alerts.open_alerts()

    def _detectors(self) -> tuple[Any, ...]:
        return (self.latency, self.errors, self.tokens, self.finish)

    def snapshot(self) -> bytes:
        """Everything needed to resume exactly: baselines, open windows, pending alerts.

        A pickle, so only restore snapshots this process family wrote (they live in its own
        database); a snapshot from another engine version is refused and the engine starts fresh.
        """
        state = {k: v for k, v in self.__dict__.items() if k != "config"}
        out = _Deflating(SNAPSHOT_MAGIC)
        pickle.dump(state, out, protocol=pickle.HIGHEST_PROTOCOL)
        return out.getvalue()

    @classmethod
    def restore(cls, config: EngineConfig | None, data: bytes) -> Engine:
        if not data.startswith(SNAPSHOT_MAGIC):
            raise ValueError("not a snapshot of this engine version")
        config = config or EngineConfig()
        state = pickle.loads(zlib.decompress(data[len(SNAPSHOT_MAGIC) :]))
        if state["_width"] != config.window_seconds * US:
            raise ValueError("window_seconds changed since the snapshot; start the engine fresh")
        engine = cls.__new__(cls)
        engine.__dict__.update(state)
        engine.config = config
        for part in (*engine._detectors(), engine.alerts):
            part.config = config
        return engine
