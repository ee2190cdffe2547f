"""A trace as waterfall rows: clock skew corrected, RPC halves merged, critical path marked.

Rows come in depth-first order, so a row's subtree is the run of rows after it with a greater
depth; the browser collapses a subtree by hiding that run. Big traces start with deep subtrees
collapsed so that the first paint shows at most ``VISIBLE_ROWS`` rows.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tracebox.appliance.genai import extract_llm
from tracebox.appliance.insights.critical import critical_path
from tracebox.appliance.trace import SpanNode, correct_clock_skew

#: Traces with more rows than this open with their deeper levels collapsed.
VISIBLE_ROWS = 400


@dataclass(slots=True)
class Row:
    index: int
    depth: int
    spans: list[dict[str, Any]]  # one span, or a client and its server when they share an id
    start: int  # microseconds from the trace start
    duration: int | None
    service: str
    name: str
    kind: str | None
    remote: str | None
    error: bool
    color_service: str = ""
    parent: int | None = None
    children: list[int] = field(default_factory=list)
    descendants: int = 0
    critical: bool = False
    collapsed: bool = False
    hidden: bool = False
    llm: dict[str, Any] | None = None

    @property
    def end(self) -> int:
        return self.start + (self.duration or 0)


@dataclass(slots=True)
class Waterfall:
    trace_id: str
    rows: list[Row]
    start_us: int
    duration_us: int
    span_count: int
    services: list[tuple[str, int]]
    depth: int
    errors: int
    llm_calls: int
    llm_cost: float | None
    llm_input_tokens: int
    llm_output_tokens: int
    root: Row | None

    def detail(self) -> list[dict[str, Any]]:
        """What the span panel shows, per row, for the page's JSON island."""
        return [
            {
                "spans": row.spans,
                "start": row.start,
                "llm": row.llm,
                "critical": row.critical,
            }
            for row in self.rows
        ]


def _service(span: dict[str, Any] | None) -> str:
    ep = span.get("localEndpoint") if span else None
    return (ep.get("serviceName") if ep else None) or "unknown"


def _remote(span: dict[str, Any]) -> str | None:
    ep = span.get("remoteEndpoint")
    return ep.get("serviceName") if ep else None


def _shared_half(node: SpanNode) -> SpanNode | None:
    """The shared server child of a client span with the same id, which the row merges in."""
    span = node.span
    if span is None or span.get("kind") != "CLIENT":
        return None
    for child in node.children:
        if child.span is not None and child.span.get("shared") and child.span["id"] == span["id"]:
            return child
    return None


def build(
    trace_id: str,
    spans: list[dict[str, Any]],
    otel: dict[tuple[str, str | None], dict[str, Any]] | None = None,
    *,
    strict_trace_id: bool = True,
) -> Waterfall:
    """Rows for a non-empty merged trace; ``otel`` maps (span id, service) to the span's OTLP extras."""
    otel = otel or {}
    tree = correct_clock_skew(spans, strict_trace_id=strict_trace_id)
    starts = [s["timestamp"] for s in spans if s.get("timestamp")]
    trace_start = min(starts) if starts else 0
    # skew correction moved some spans: the trace's bounds come from the corrected tree
    corrected_starts = [n.span["timestamp"] for n in tree.traverse() if n.span.get("timestamp")]  # type: ignore[union-attr]
    if corrected_starts:
        trace_start = min(corrected_starts)

    rows: list[Row] = []
    stack: list[tuple[SpanNode, int, int | None]] = [
        (child, 0, None) for child in reversed(tree.children if tree.span is None else [tree])
    ]
    while stack:
        node, depth, parent = stack.pop()
        span: dict[str, Any] = node.span  # type: ignore[assignment]
        half = _shared_half(node)
        members = [span] if half is None else [span, half.span]
        children = list(node.children)
        if half is not None:
            children.remove(half)
            children.extend(half.children)
            children.sort(key=lambda c: c.span.get("timestamp", 0))  # type: ignore[union-attr]
        with_otel = [_attach(m, otel) for m in members]  # type: ignore[arg-type]
        shown = with_otel[-1]  # the server half names the service that did the work
        ts = span.get("timestamp")
        error = any("error" in (m.get("tags") or {}) for m in members)  # type: ignore[union-attr]
        row = Row(
            index=len(rows),
            depth=depth,
            spans=with_otel,
            start=(ts - trace_start) if ts else 0,
            duration=span.get("duration") or (half.span.get("duration") if half else None),  # type: ignore[union-attr]
            service=_service(shown) if half is None else f"{_service(span)} → {_service(shown)}",
            name=shown.get("name") or span.get("name") or "",
            kind=span.get("kind"),
            remote=_remote(span),
            error=error,
            color_service=_service(shown),
            parent=parent,
        )
        for member in with_otel:
            llm = extract_llm(member) if member.get("tags") else None
            if llm:
                row.llm = llm
                break
        if parent is not None:
            rows[parent].children.append(row.index)
        rows.append(row)
        stack.extend((child, depth + 1, row.index) for child in reversed(children))

    # descendants, bottom-up (children always come after their parent)
    for row in reversed(rows):
        if row.parent is not None:
            rows[row.parent].descendants += row.descendants + 1
    _mark_critical_path(rows)
    _collapse_deep_levels(rows)

    ends = [r.end for r in rows]
    duration = max(ends) if ends else 0
    service_counts = Counter(_service(s) for s in spans)
    llm_rows = [r.llm for r in rows if r.llm]
    costs = [c["cost_usd"] for c in llm_rows if c.get("cost_usd") is not None]
    root = rows[0] if rows else None
    return Waterfall(
        trace_id=trace_id,
        rows=rows,
        start_us=trace_start,
        duration_us=duration,
        span_count=len(spans),
        services=sorted(service_counts.items(), key=lambda kv: (-kv[1], kv[0])),
        depth=max((r.depth for r in rows), default=0) + 1,
        errors=sum(1 for s in spans if "error" in (s.get("tags") or {})),
        llm_calls=len(llm_rows),
        llm_cost=sum(costs) if costs else None,
        llm_input_tokens=sum(c.get("input_tokens") or 0 for c in llm_rows),
        llm_output_tokens=sum(c.get("output_tokens") or 0 for c in llm_rows),
        root=root,
    )


def _attach(span: dict[str, Any], otel: dict[tuple[str, str | None], dict[str, Any]]) -> dict[str, Any]:
    extras = otel.get((span["id"], _service(span) if span.get("localEndpoint") else None))
    return {**span, "otel": extras} if extras else span


def _mark_critical_path(rows: list[Row]) -> None:
    """Jaeger's critical path, walked by the same code as the trace insights' (``insights.critical``)."""
    for index in critical_path(rows):
        rows[index].critical = True


def _collapse_deep_levels(rows: list[Row]) -> None:
    if len(rows) <= VISIBLE_ROWS:
        return
    per_depth = Counter(r.depth for r in rows)
    shown, limit = 0, 0
    for depth in sorted(per_depth):
        if shown + per_depth[depth] > VISIBLE_ROWS:
            break
        shown += per_depth[depth]
        limit = depth
    for row in rows:
        if row.depth == limit and row.children:
            row.collapsed = True
        elif row.depth > limit:
            row.hidden = True


def operations(spans: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (service, span name): how many spans and their total and longest duration (µs)."""
    ops: dict[tuple[str, str], dict[str, float]] = {}
    for span in spans:
        key = (_service(span), span.get("name") or "")
        op = ops.setdefault(key, {"count": 0, "total": 0, "max": 0})
        duration = span.get("duration") or 0
        op["count"] += 1
        op["total"] += duration
        op["max"] = max(op["max"], duration)
    return ops
