"""Read the patterns of the field's debugging playbook off one whole trace.

The trace is the tree the UI shows (``trace.correct_clock_skew``: fragments merged, servers shifted
into their clients). Each rule looks at one parent and its children at a time, so the work is
linear in the spans plus a sort of each parent's children: bounded on a 5,000-span trace.

- ``n_plus_one``: at least ``n_plus_one_min`` spans under one parent with the same service,
  operation, remote and normalised statement (literals stripped).
- ``sequential_fanout``: a run of sibling CLIENT calls, each starting when the previous one ended
  (no local work between them that could be using its result), that differ in operation or
  arguments; what running them side by side would save is sum - max.
- ``queuing_gap``: the longest stretch of a parent not covered by any child (a pool wait, a queue,
  uninstrumented work), or a SERVER starting long after its CLIENT called.
- ``retry_storm``: at least ``retry_min_failures`` failing calls from one parent to one remote
  operation.
- ``oversized_llm_context``: an LLM call whose input tokens are far above its route's median; the
  median comes from outside (``llm_baseline``), and without one the rule stays silent.
- ``critical_path``: the spans that set the trace's latency, with each one's share.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tracebox.appliance.genai import extract_llm
from tracebox.appliance.insights.critical import critical_path
from tracebox.appliance.insights.normalise import normalise_statement, statement_of
from tracebox.appliance.model import Span
from tracebox.appliance.pricing import Pricer
from tracebox.appliance.trace import SpanNode, correct_clock_skew

N_PLUS_ONE = "n_plus_one"
SEQUENTIAL_FANOUT = "sequential_fanout"
QUEUING_GAP = "queuing_gap"
RETRY_STORM = "retry_storm"
OVERSIZED_LLM_CONTEXT = "oversized_llm_context"
CRITICAL_PATH = "critical_path"
#: The patterns (everything but the critical path, which every trace has).
PATTERNS = (N_PLUS_ONE, SEQUENTIAL_FANOUT, QUEUING_GAP, RETRY_STORM, OVERSIZED_LLM_CONTEXT)
KINDS = (*PATTERNS, CRITICAL_PATH)
LABELS = {
    N_PLUS_ONE: "N+1 queries",
    SEQUENTIAL_FANOUT: "Sequential calls",
    QUEUING_GAP: "Queuing gap",
    RETRY_STORM: "Retry storm",
    OVERSIZED_LLM_CONTEXT: "Oversized LLM context",
    CRITICAL_PATH: "Critical path",
}
_LLM_HINTS = ("gen_ai.", "llm.", "langfuse.")
_ARG_KEYS = (
    "db.query.text",
    "db.statement",
    "url.full",
    "http.url",
    "http.target",
    "http.path",
    "url.path",
    "url.query",
    "rpc.request",
    "messaging.destination.name",
)

_WRITES = frozenset(("INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE", "SET", "HSET", "DEL"))

#: Per-route LLM baseline: (service, span name) -> median input tokens.
LlmBaseline = Mapping[tuple[str, str], float]
#: Reads an LLM call's tokens without the price table (genai-prices: ~20 MB in each process that
#: loads it); a finding's cost is the one the call was priced at on ingest (``llm_costs``).
_TOKENS_ONLY = Pricer(table=False)


@dataclass(frozen=True, slots=True)
class InsightConfig:
    n_plus_one_min: int = 5
    fanout_min_calls: int = 2
    fanout_max_gap_us: int = 1_000  # a longer pause between calls may be the parent using a result
    fanout_min_savings_us: int = 20_000
    fanout_min_share: float = 0.2  # of the parent's duration
    gap_min_us: int = 20_000
    gap_min_share: float = 0.3  # of the parent's duration
    retry_min_failures: int = 3
    llm_min_ratio: float = 3.0
    llm_min_excess_tokens: int = 1_000
    critical_top: int = 50  # spans listed in the critical path's details


DEFAULT_CONFIG = InsightConfig()


@dataclass(slots=True)
class Finding:
    kind: str
    span_ids: list[str]
    at_stake_us: int
    summary: str
    service: str  # the operation the finding is about (the parent of the pattern, mostly)
    operation: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "label": LABELS[self.kind],
            "spanIds": self.span_ids,
            "atStakeUs": self.at_stake_us,
            "summary": self.summary,
            "serviceName": self.service,
            "operation": self.operation,
            "details": self.details,
        }


class _Node:
    __slots__ = ("children", "depth", "duration", "index", "parent", "span", "start")

    def __init__(self, index: int, span: Span, parent: int | None, depth: int) -> None:
        self.index = index
        self.span = span
        self.parent = parent
        self.depth = depth
        self.start: int = span.get("timestamp") or 0
        self.duration: int | None = span.get("duration") if self.start else None
        self.children: list[int] = []

    @property
    def end(self) -> int:
        return self.start + (self.duration or 0)

    @property
    def id(self) -> str:
        return self.span["id"]

    @property
    def service(self) -> str:
        ep = self.span.get("localEndpoint")
        return (ep.get("serviceName") if ep else None) or "unknown"

    @property
    def name(self) -> str:
        return self.span.get("name") or ""

    @property
    def kind(self) -> str | None:
        return self.span.get("kind")

    @property
    def remote(self) -> str:
        ep = self.span.get("remoteEndpoint")
        tags = self.span.get("tags") or {}
        return (
            (ep.get("serviceName") if ep else None)
            or tags.get("peer.service")
            or tags.get("server.address")
            or tags.get("db.system.name")
            or tags.get("db.system")
            or ""
        )

    def failed(self) -> bool:
        tags = self.span.get("tags")
        if not tags:
            return False
        if "error" in tags or tags.get("otel.status_code") == "ERROR":
            return True
        status = tags.get("http.response.status_code") or tags.get("http.status_code")
        try:
            code = int(status) if status is not None else 0
        except (TypeError, ValueError):
            return False
        return code == 429 or code >= 500


def _nodes(spans: list[Span]) -> list[_Node]:
    """The trace tree flattened depth-first (children in start order), parents before children."""
    tree = correct_clock_skew(spans)
    nodes: list[_Node] = []
    stack: list[tuple[SpanNode, int | None, int]] = [
        (child, None, 0) for child in reversed(tree.children if tree.span is None else [tree])
    ]
    while stack:
        node, parent, depth = stack.pop()
        item = _Node(len(nodes), node.span, parent, depth)  # type: ignore[arg-type]
        if parent is not None:
            nodes[parent].children.append(item.index)
        nodes.append(item)
        stack.extend((child, item.index, depth + 1) for child in reversed(node.children))
    return nodes


def analyse(
    spans: list[Span],
    *,
    llm_baseline: LlmBaseline | None = None,
    llm_costs: Mapping[str, float] | None = None,
    config: InsightConfig = DEFAULT_CONFIG,
    critical: bool = True,
) -> list[Finding]:
    """Findings for one trace, patterns first (by time at stake), then the critical path.
    ``llm_costs``: the USD cost of its LLM calls by span id (``insights.store.llm_costs``)."""
    if not spans:
        return []
    nodes = _nodes(spans)
    findings: list[Finding] = []
    for node in nodes:
        if not node.children:
            continue
        children = [nodes[i] for i in node.children]
        repeated = _n_plus_one(node, children, config, findings)
        _fanout(node, children, repeated, config, findings)
        _queuing_gap(node, children, config, findings)
        _retry_storm(node, children, config, findings)
    if llm_baseline:
        _oversized_llm(nodes, llm_baseline, llm_costs or {}, config, findings)
    findings.sort(key=lambda f: (-f.at_stake_us, f.kind))
    if critical:
        path = _critical_path(nodes, config)
        if path is not None:
            findings.append(path)
    return findings


def kinds_of(findings: Iterable[Finding]) -> list[str]:
    """The distinct patterns among findings, in ``PATTERNS`` order."""
    seen = {f.kind for f in findings}
    return [k for k in PATTERNS if k in seen]


# -- N+1 ------------------------------------------------------------------------------------------


def _n_plus_one(parent: _Node, children: list[_Node], cfg: InsightConfig, out: list[Finding]) -> set[int]:
    if len(children) < cfg.n_plus_one_min:
        return set()
    groups: dict[tuple[str, str, str, str], list[_Node]] = defaultdict(list)
    for child in children:
        statement = statement_of(child.span.get("tags"))
        if statement is None:
            continue
        groups[(child.service, child.name, child.remote, normalise_statement(statement))].append(child)
    taken: set[int] = set()
    for (service, name, remote, statement), members in groups.items():
        if len(members) < cfg.n_plus_one_min:
            continue
        durations = [m.duration or 0 for m in members]
        total, longest = sum(durations), max(durations)
        taken.update(m.index for m in members)
        out.append(
            Finding(
                kind=N_PLUS_ONE,
                span_ids=[m.id for m in members],
                at_stake_us=total - longest,
                summary=(
                    f"{len(members)} times {name or statement[:60]} under {parent.service} {parent.name}: "
                    f"one query per item; fetching them in one query would save about {_us(total - longest)}"
                ),
                service=parent.service,
                operation=parent.name,
                details={
                    "parentId": parent.id,
                    "count": len(members),
                    "statement": statement,
                    "querying": service,
                    "remote": remote,
                    "operationName": name,
                    "totalUs": total,
                    "distinctStatements": len({statement_of(m.span.get("tags")) for m in members}),
                },
            )
        )
    return taken


# -- sequential fan-out ---------------------------------------------------------------------------


def _args(node: _Node) -> tuple:
    tags = node.span.get("tags") or {}
    return tuple(tags.get(k) for k in _ARG_KEYS)


def _fanout(
    parent: _Node, children: list[_Node], skip: set[int], cfg: InsightConfig, out: list[Finding]
) -> None:
    calls = [
        c for c in children if c.kind == "CLIENT" and c.duration and c.index not in skip and not c.failed()
    ]
    if len(calls) < cfg.fanout_min_calls or not parent.duration:
        return
    calls.sort(key=lambda c: (c.start, c.end))
    run: list[_Node] = []
    for call in calls:
        if _writes(call):  # a write usually stores what the calls before it read: it ends the run
            _judge_run(parent, run, cfg, out)
            run = []
            continue
        gap = call.start - run[-1].end if run else 0
        # a model's answer (a completion, an embedding) is what the next step is usually made of
        if 0 <= gap <= cfg.fanout_max_gap_us and not (run and _model_call(run[-1])):
            run.append(call)
        else:  # overlapping (already concurrent) or a pause: the run ends
            _judge_run(parent, run, cfg, out)
            run = [call]
    _judge_run(parent, run, cfg, out)


def _model_call(node: _Node) -> bool:
    tags = node.span.get("tags") or {}
    return "gen_ai.operation.name" in tags or "gen_ai.request.model" in tags or "llm.request.type" in tags


def _writes(node: _Node) -> bool:
    tags = node.span.get("tags") or {}
    operation = tags.get("db.operation.name") or tags.get("db.operation")
    if not operation:
        statement = statement_of(tags)
        if statement is None:
            return False
        operation = statement.lstrip("( ").split(None, 1)[0] if statement.strip() else ""
    return str(operation).upper() in _WRITES


def _judge_run(parent: _Node, run: list[_Node], cfg: InsightConfig, out: list[Finding]) -> None:
    # a call repeating an earlier one in the run exactly (same operation, same arguments) is a
    # poll or a retry, not independent work: it stays out
    seen: set[tuple] = set()
    calls: list[_Node] = []
    for call in run:
        key = (call.remote, call.name, _args(call))
        if key not in seen:
            seen.add(key)
            calls.append(call)
    if len(calls) < cfg.fanout_min_calls:
        return
    durations = [c.duration or 0 for c in calls]
    savings = sum(durations) - max(durations)
    if savings < cfg.fanout_min_savings_us or savings < cfg.fanout_min_share * (parent.duration or 0):
        return
    ops = sorted({f"{c.remote or c.service} {c.name}".strip() for c in calls})
    out.append(
        Finding(
            kind=SEQUENTIAL_FANOUT,
            span_ids=[c.id for c in calls],
            at_stake_us=savings,
            summary=(
                f"{len(calls)} calls from {parent.service} {parent.name} ran one after another "
                f"({_us(sum(durations))}); if they do not need each other's results, running them "
                f"side by side would save {_us(savings)}"
            ),
            service=parent.service,
            operation=parent.name,
            details={
                "parentId": parent.id,
                "count": len(calls),
                "operations": ops[:20],
                "sequentialUs": sum(durations),
                "parallelUs": max(durations),
                "savingsUs": savings,
            },
        )
    )


# -- queuing gaps ---------------------------------------------------------------------------------


def _queuing_gap(parent: _Node, children: list[_Node], cfg: InsightConfig, out: list[Finding]) -> None:
    if not parent.duration or parent.duration < cfg.gap_min_us:
        return
    lo, hi = parent.start, parent.end
    timed = sorted((c for c in children if c.start), key=lambda c: c.start)
    if not timed:
        return
    best, best_at, best_next = 0, lo, None
    cursor = lo
    for child in timed:
        if child.start > cursor and child.start - cursor > best:
            best, best_at, best_next = min(child.start, hi) - cursor, cursor, child
        cursor = max(cursor, min(child.end, hi))
        if cursor >= hi:
            break
    if hi - cursor > best:
        best, best_at, best_next = hi - cursor, cursor, None
    if best < cfg.gap_min_us or best < cfg.gap_min_share * parent.duration:
        return
    server_late = (
        best_next is not None
        and best_at == lo
        and parent.kind == "CLIENT"
        and best_next.kind == "SERVER"
        and best_next.end <= hi  # a server ending after its client is clock skew, not queuing
    )
    if server_late:
        assert best_next is not None
        what = (
            f"{best_next.service} started {_us(best)} after {parent.service} called it "
            f"({best / parent.duration:.0%} of the call): a queue or pool in front of the server"
        )
    elif best_next is not None:
        where = "before its first child" if best_at == lo else "between its children"
        what = (
            f"{parent.service} {parent.name} waited {_us(best)} {where}, before {best_next.service} "
            f"{best_next.name} ({best / parent.duration:.0%} of it): queuing, a pool wait or uninstrumented work"
        )
    else:
        what = (
            f"{parent.service} {parent.name} spent {_us(best)} after its last child "
            f"({best / parent.duration:.0%} of it) in no child span: uninstrumented work or a wait"
        )
    ids = [parent.id] + ([best_next.id] if best_next is not None else [])
    out.append(
        Finding(
            kind=QUEUING_GAP,
            span_ids=ids,
            at_stake_us=best,
            summary=what,
            service=parent.service,
            operation=parent.name,
            details={
                "parentId": parent.id,
                "beforeSpanId": best_next.id if best_next is not None else None,
                "gapStartUs": best_at - lo,
                "gapUs": best,
                "share": round(best / parent.duration, 4),
                "cause": "server_started_late"
                if server_late
                else ("before_span" if best_next else "after_children"),
            },
        )
    )


# -- retry storms ---------------------------------------------------------------------------------


def _retry_storm(parent: _Node, children: list[_Node], cfg: InsightConfig, out: list[Finding]) -> None:
    if len(children) < cfg.retry_min_failures:
        return
    groups: dict[tuple[str, str], list[_Node]] = defaultdict(list)
    for child in children:
        if child.kind in ("CLIENT", "PRODUCER", None) and child.failed():
            groups[(child.remote, child.name)].append(child)
    for (remote, name), failures in groups.items():
        if len(failures) < cfg.retry_min_failures:
            continue
        failures.sort(key=lambda c: c.start)
        wasted = max(f.end for f in failures) - failures[0].start
        target = f"{remote} {name}".strip() if remote else name
        out.append(
            Finding(
                kind=RETRY_STORM,
                span_ids=[f.id for f in failures],
                at_stake_us=max(0, wasted),
                summary=(
                    f"{len(failures)} failing calls to {target} from {parent.service} {parent.name} "
                    f"within {_us(wasted)}: retries without enough backoff, or a dependency that is down"
                ),
                service=parent.service,
                operation=parent.name,
                details={
                    "parentId": parent.id,
                    "remote": remote,
                    "operationName": name,
                    "failures": len(failures),
                    "attempts": sum(1 for c in children if c.remote == remote and c.name == name),
                },
            )
        )


# -- oversized LLM context ------------------------------------------------------------------------


def _oversized_llm(
    nodes: list[_Node],
    baseline: LlmBaseline,
    costs: Mapping[str, float],
    cfg: InsightConfig,
    out: list[Finding],
) -> None:
    for node in nodes:
        tags = node.span.get("tags")
        if not tags or not any(k.startswith(_LLM_HINTS) for k in tags):
            continue
        median = baseline.get((node.service, node.name))
        if not median:
            continue  # no norm known for this route: say nothing
        llm = extract_llm(node.span, _TOKENS_ONLY)
        tokens = (llm or {}).get("input_tokens")
        if not tokens:
            continue
        ratio = tokens / median
        excess = tokens - median
        if ratio < cfg.llm_min_ratio or excess < cfg.llm_min_excess_tokens:
            continue
        ttft = llm.get("ttft_us") if llm else None
        # prefill time grows with the prompt: the excess tokens' part of the time to first token
        stake = round(ttft * excess / tokens) if ttft else 0
        cost = costs.get(node.id)
        route = _route(nodes, node)
        out.append(
            Finding(
                kind=OVERSIZED_LLM_CONTEXT,
                span_ids=[node.id],
                at_stake_us=stake,
                summary=(
                    f"{node.service} {node.name} sent {tokens:,} input tokens, {ratio:.1f} times the usual "
                    f"{round(median):,} for this call: an overgrown prompt, history or retrieved context"
                ),
                service=node.service,
                operation=node.name,
                details={
                    "inputTokens": tokens,
                    "medianInputTokens": round(median),
                    "ratio": round(ratio, 2),
                    "excessTokens": round(excess),
                    "excessCostUsd": round(cost * excess / tokens, 6) if cost else None,
                    "route": route,
                    "model": (llm or {}).get("response_model") or (llm or {}).get("request_model"),
                },
            )
        )


def _route(nodes: list[_Node], node: _Node) -> str:
    """The nearest SERVER span above (the engine's notion of an LLM call's route), else the root."""
    current: _Node | None = node
    while current is not None:
        if current.kind == "SERVER":
            return current.name
        if current.parent is None:
            return current.name
        current = nodes[current.parent]
    return node.name


# -- critical path --------------------------------------------------------------------------------


def _critical_path(nodes: list[_Node], cfg: InsightConfig) -> Finding | None:
    on_path = critical_path(nodes)
    total = sum(on_path.values())
    if not on_path or total <= 0:
        return None
    ordered = sorted(on_path, key=lambda i: (nodes[i].start, i))
    top = sorted(on_path.items(), key=lambda kv: -kv[1])
    segments = [
        {
            "spanId": nodes[i].id,
            "serviceName": nodes[i].service,
            "name": nodes[i].name,
            "selfUs": own,
            "share": round(own / total, 4),
        }
        for i, own in top[: cfg.critical_top]
        if own > 0
    ]
    first = segments[0]
    roots = [n for n in nodes if n.parent is None]
    return Finding(
        kind=CRITICAL_PATH,
        span_ids=[nodes[i].id for i in ordered],
        at_stake_us=total,
        summary=(
            f"{len(on_path)} spans set the trace's {_us(total)}; {first['serviceName']} {first['name']} "
            f"alone holds {first['share']:.0%} of it"
        ),
        service=roots[0].service if roots else "unknown",
        operation=roots[0].name if roots else "",
        details={"segments": segments, "spans": len(on_path)},
    )


def _us(value: float) -> str:
    if value < 1000:
        return f"{round(value)}µs"
    if value < 1_000_000:
        ms = value / 1000
        return f"{ms:.3g}ms" if ms < 100 else f"{round(ms)}ms"
    return f"{value / 1_000_000:.3g}s"
