"""Reads shaped for the web UI: trace summaries for search results and a trace's OTLP extras.

Like ``queries``, each function takes a read connection first and runs off the event loop through
``Store.read``; summaries are computed here so that only small values cross back to the loop.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any

import apsw
import orjson

from tracebox.appliance import insights
from tracebox.appliance.genai import extract_llm
from tracebox.appliance.insights import analyse
from tracebox.appliance.insights import store as insight_store
from tracebox.appliance.model import Span, normalize_trace_id
from tracebox.appliance.query import QueryRequest
from tracebox.appliance.store import otel_parts, queries
from tracebox.appliance.store.rows import trace_low

#: With a pattern filter, search analyses up to this many times the limit of matching traces...
PATTERN_SCAN = 10
#: ... and never more than this many.
MAX_PATTERN_SCAN = 2000
#: Tag keys that mark a span worth asking ``extract_llm`` about (cheap pre-filter).
_LLM_HINTS = ("gen_ai.", "llm.", "langfuse.")


@dataclass(slots=True)
class TraceSummary:
    trace_id: str
    root_service: str
    root_name: str
    start_us: int
    duration_us: int
    span_count: int
    error_count: int
    services: list[tuple[str, int]] = field(default_factory=list)
    llm_calls: int = 0
    llm_cost: float | None = None
    patterns: list[str] = field(default_factory=list)  # trace insight kinds found (``insights.PATTERNS``)


def summarize(spans: list[Span]) -> TraceSummary:
    """One trace's row in the search results; ``spans`` as ``merge_trace`` returns them."""
    root = next((s for s in spans if "parentId" not in s), spans[0])
    starts = [s["timestamp"] for s in spans if s.get("timestamp")]
    ends = [s["timestamp"] + s.get("duration", 0) for s in spans if s.get("timestamp")]
    start = min(starts) if starts else 0
    duration = root.get("duration") or ((max(ends) - start) if ends else 0)
    services = Counter(_service(s) for s in spans)
    errors = sum(1 for s in spans if "error" in (s.get("tags") or {}))
    llm_calls, cost = 0, None
    for span in spans:
        tags = span.get("tags")
        if tags and any(k.startswith(_LLM_HINTS) for k in tags):
            llm = extract_llm(span)
            if llm:
                llm_calls += 1
                if llm.get("cost_usd") is not None:
                    cost = (cost or 0.0) + llm["cost_usd"]
    return TraceSummary(
        trace_id=root["traceId"],
        root_service=_service(root),
        root_name=root.get("name") or "",
        start_us=start,
        duration_us=duration,
        span_count=len(spans),
        error_count=errors,
        services=sorted(services.items(), key=lambda kv: (-kv[1], kv[0])),
        llm_calls=llm_calls,
        llm_cost=cost,
    )


def search_summaries(
    conn: apsw.Connection, request: QueryRequest, strict: bool, pattern: str | None = None
) -> list[TraceSummary]:
    """``queries.get_traces`` reduced to summaries with their insight patterns, newest first.

    With ``pattern`` only traces showing it are kept: the newest ``PATTERN_SCAN`` times the limit
    matching traces (at most ``MAX_PATTERN_SCAN``) are analysed to find ``request.limit`` of them.
    """
    scan = request
    if pattern:
        scan = replace(request, limit=min(MAX_PATTERN_SCAN, request.limit * PATTERN_SCAN))
    summaries = []
    for trace in queries.get_traces(conn, scan, strict):
        summary = summarize(trace)
        summary.patterns = insights.kinds_of(analyse(trace, critical=False))
        if pattern and pattern not in summary.patterns:
            continue
        summaries.append(summary)
        if len(summaries) >= request.limit:
            break
    return summaries


def trace_findings(conn: apsw.Connection, spans: list[Span]) -> list[insights.Finding]:
    """The insights of a trace already read, with the LLM baseline of its routes."""
    return insight_store.analyse_stored(conn, spans)


def trace_otel(conn: apsw.Connection, trace_id: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    """The OTLP extras of a trace's spans, keyed by (span id, local service)."""
    trace_id = normalize_trace_id(trace_id)
    sql = (
        "SELECT span_id, service, span_json(otel), ts, duration, span_json(json) -> '$.tags' FROM spans"
        " WHERE trace_low = ? AND otel IS NOT NULL"
    )
    extras = {}
    for span_id, service, otel, ts, duration, tags in conn.execute(sql, (trace_low(trace_id),)):
        extra = extras[(span_id, service)] = orjson.loads(otel)
        otel_parts.expand(extra, orjson.loads(tags) if tags else {}, ts, duration)
    otel_parts.restore(conn, extras.values())
    return extras


def trace_with_otel(
    conn: apsw.Connection, trace_id: str, strict: bool
) -> tuple[list[Span], dict[tuple[str, str | None], dict[str, Any]]]:
    """A trace's merged spans and their OTLP extras, in one read."""
    spans = queries.get_trace(conn, trace_id, strict)
    return spans, (trace_otel(conn, trace_id) if spans else {})


def _service(span: Span) -> str:
    ep = span.get("localEndpoint")
    return (ep.get("serviceName") if ep else None) or "unknown"
