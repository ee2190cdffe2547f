"""The insights' tables and reads: per-operation pattern counts by hour, analysed traces, and the
per-route LLM baseline (median input tokens) that the oversized-context rule compares against.

Each read takes a read connection first, for ``Store.read``; ``DDL`` is the ``insights``
component's migration (``Store.ensure_schema``).
"""

from __future__ import annotations

from collections import defaultdict
from statistics import median
from typing import Any

import apsw
import orjson

from tracebox.appliance.insights.analyse import Finding, LlmBaseline, analyse
from tracebox.appliance.model import Span
from tracebox.appliance.store import queries

HOUR_US = 3_600_000_000
#: LLM calls of a route needed before its median counts as a norm.
LLM_MIN_CALLS = 20
LLM_BASELINE_LOOKBACK_US = 24 * HOUR_US
LLM_SAMPLE = 2000

DDL = """
CREATE TABLE IF NOT EXISTS insight_counts (
    service    TEXT NOT NULL,
    operation  TEXT NOT NULL,
    kind       TEXT NOT NULL,       -- a pattern, or '' for the operation's own trace count
    hour       INTEGER NOT NULL,    -- epoch µs of the hour the trace started in
    traces     INTEGER NOT NULL,    -- traces with the pattern on this operation (or with the operation);
                                    -- fractional estimates while the rollup samples under load
    findings   INTEGER NOT NULL,
    at_stake   INTEGER NOT NULL,    -- µs summed over the findings
    example    TEXT,                -- a trace id
    PRIMARY KEY (service, operation, kind, hour)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS insight_counts_kind_hour ON insight_counts (kind, hour);
CREATE TABLE IF NOT EXISTS insight_traces (
    trace_id  TEXT PRIMARY KEY,
    ts        INTEGER NOT NULL,
    patterns  TEXT NOT NULL         -- comma-separated pattern kinds
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS insight_traces_ts ON insight_traces (ts);
CREATE TABLE IF NOT EXISTS insight_state (
    name      TEXT PRIMARY KEY,
    cursor    INTEGER NOT NULL,
    snapshot  BLOB NOT NULL
);
"""
SCHEMA = [DDL]


def llm_baseline(conn: apsw.Connection, end_us: int, keys: set[tuple[str, str]] | None = None) -> LlmBaseline:
    """Median input tokens per (service, span name) over the day before ``end_us``, for routes with
    at least ``LLM_MIN_CALLS`` calls; only ``keys`` when given (newest ``LLM_SAMPLE`` calls each)."""
    lo = end_us - LLM_BASELINE_LOOKBACK_US
    samples: dict[tuple[str, str], list[int]] = defaultdict(list)
    if keys is None:
        sql = (
            "SELECT service, name, input_tokens FROM llm_calls WHERE ts BETWEEN ? AND ?"
            " AND input_tokens IS NOT NULL ORDER BY ts DESC LIMIT ?"
        )
        for service, name, tokens in conn.execute(sql, (lo, end_us, LLM_SAMPLE * 20)):
            samples[(service or "unknown", name or "")].append(tokens)
    else:
        sql = (
            "SELECT input_tokens FROM llm_calls WHERE ts BETWEEN ? AND ? AND service IS ? AND name IS ?"
            " AND input_tokens IS NOT NULL ORDER BY ts DESC LIMIT ?"
        )
        for service, name in keys:
            args = (lo, end_us, None if service == "unknown" else service, name, LLM_SAMPLE)
            samples[(service, name)] = [row[0] for row in conn.execute(sql, args)]
    return {key: float(median(values)) for key, values in samples.items() if len(values) >= LLM_MIN_CALLS}


def llm_keys(spans: list[Span]) -> set[tuple[str, str]]:
    """The (service, span name) of the trace's spans that look like LLM calls."""
    keys = set()
    for span in spans:
        tags = span.get("tags")
        if tags and any(k.startswith(("gen_ai.", "llm.")) for k in tags):
            local = span.get("localEndpoint")
            keys.add(((local.get("serviceName") if local else None) or "unknown", span.get("name") or ""))
    return keys


def trace_insights(conn: apsw.Connection, trace_id: str, strict: bool) -> tuple[list[Span], list[Finding]]:
    """A trace's merged spans and its findings (with the LLM baseline of its routes)."""
    spans = queries.get_trace(conn, trace_id, strict)
    if not spans:
        return [], []
    return spans, analyse_stored(conn, spans)


def analyse_stored(conn: apsw.Connection, spans: list[Span]) -> list[Finding]:
    """``analyse`` for stored spans: with the LLM baseline of their routes and the costs their LLM
    calls were priced at on ingest."""
    baseline = baseline_for(conn, spans)
    costs: dict[str, float] = {}
    if baseline:
        for by_span in llm_costs(conn, list({s["traceId"] for s in spans})).values():
            costs.update(by_span)
    return analyse(spans, llm_baseline=baseline, llm_costs=costs)


def llm_costs(conn: apsw.Connection, trace_ids: list[str]) -> dict[str, dict[str, float]]:
    """The USD cost of each priced LLM call of these traces, by trace id and span id."""
    out: dict[str, dict[str, float]] = {}
    for start in range(0, len(trace_ids), 500):
        chunk = trace_ids[start : start + 500]
        sql = (
            "SELECT c.trace_id, s.span_id, c.cost_usd FROM llm_calls c JOIN spans s ON s.id = c.span_id"
            f" WHERE c.cost_usd IS NOT NULL AND c.trace_id IN ({','.join('?' * len(chunk))})"
        )
        for trace_id, span_id, cost in conn.execute(sql, chunk):
            out.setdefault(trace_id, {})[span_id] = cost
    return out


def baseline_for(conn: apsw.Connection, spans: list[Span]) -> LlmBaseline | None:
    keys = llm_keys(spans)
    if not keys:
        return None
    end = max((s.get("timestamp") or 0) for s in spans)
    try:
        return llm_baseline(conn, end, keys)
    except apsw.SQLError:  # no llm_calls table in this database
        return None


def aggregates(
    conn: apsw.Connection,
    lo_us: int,
    hi_us: int,
    service: str | None = None,
    kind: str | None = None,
    operation: str | None = None,
) -> list[dict[str, Any]]:
    """Pattern counts per (service, operation, kind), by hour, with the operation's trace count."""
    if not _has_table(conn):
        return []
    where, args = ["kind != ''", "hour BETWEEN ? AND ?"], [lo_us - lo_us % HOUR_US, hi_us]
    for column, value in (("service", service), ("kind", kind), ("operation", operation)):
        if value:
            where.append(f"{column} = ?")
            args.append(value)
    sql = (
        "SELECT c.service, c.operation, c.kind, c.hour, c.traces, c.findings, c.at_stake, c.example,"
        " coalesce(o.traces, 0) FROM insight_counts c LEFT JOIN insight_counts o"
        " ON o.service = c.service AND o.operation = c.operation AND o.kind = '' AND o.hour = c.hour"
        f" WHERE {' AND '.join('c.' + w for w in where)} ORDER BY c.service, c.operation, c.kind, c.hour"
    )
    series: dict[tuple[str, str, str], dict[str, Any]] = {}
    for svc, op, k, hour, traces, findings, stake, example, op_traces in conn.execute(sql, args):
        row = series.get((svc, op, k))
        if row is None:
            row = series[(svc, op, k)] = {
                "serviceName": svc,
                "operation": op,
                "kind": k,
                "traces": 0,
                "operationTraces": 0,
                "findings": 0,
                "atStakeUs": 0,
                "exampleTraceIds": [],
                "hours": [],
            }
        row["traces"] += traces
        row["operationTraces"] += op_traces
        row["findings"] += findings
        row["atStakeUs"] += stake
        if example and len(row["exampleTraceIds"]) < 5:
            row["exampleTraceIds"].append(example)
        row["hours"].append(
            {
                "hour": hour,
                "traces": round(traces),
                "operationTraces": round(op_traces),
                "findings": round(findings),
                "atStakeUs": round(stake),
                "rate": round(traces / op_traces, 4) if op_traces else None,
            }
        )
    out = list(series.values())
    for row in out:
        row["rate"] = round(row["traces"] / row["operationTraces"], 4) if row["operationTraces"] else None
        for key in ("traces", "operationTraces", "findings", "atStakeUs"):
            row[key] = round(row[key])
    out.sort(key=lambda r: (-r["traces"], r["serviceName"], r["operation"], r["kind"]))
    return out


def _has_table(conn: apsw.Connection) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'insight_counts'").fetchall())


def record(conn: apsw.Connection, rows: list[tuple], traces: list[tuple[str, int, str]]) -> None:
    """Add counts (service, operation, kind, hour, traces, findings, at_stake, example) and remember
    analysed traces; runs inside the writer's transaction."""
    conn.executemany(
        "INSERT INTO insight_counts (service, operation, kind, hour, traces, findings, at_stake, example)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (service, operation, kind, hour) DO UPDATE SET"
        " traces = traces + excluded.traces, findings = findings + excluded.findings,"
        " at_stake = at_stake + excluded.at_stake, example = coalesce(example, excluded.example)",
        rows,
    )
    conn.executemany("INSERT OR IGNORE INTO insight_traces (trace_id, ts, patterns) VALUES (?, ?, ?)", traces)


def analysed(conn: apsw.Connection, trace_ids: list[str]) -> set[str]:
    """Which of these traces were counted already (a re-read after a restart must not count twice)."""
    found: set[str] = set()
    for i in range(0, len(trace_ids), 500):
        chunk = trace_ids[i : i + 500]
        sql = f"SELECT trace_id FROM insight_traces WHERE trace_id IN ({','.join('?' * len(chunk))})"
        found.update(row[0] for row in conn.execute(sql, chunk))
    return found


def patterns_of(conn: apsw.Connection, trace_ids: list[str]) -> dict[str, list[str]]:
    """The stored pattern kinds of analysed traces."""
    out: dict[str, list[str]] = {}
    for i in range(0, len(trace_ids), 500):
        chunk = trace_ids[i : i + 500]
        sql = (
            f"SELECT trace_id, patterns FROM insight_traces WHERE trace_id IN ({','.join('?' * len(chunk))})"
        )
        for trace_id, patterns in conn.execute(sql, chunk):
            out[trace_id] = [p for p in patterns.split(",") if p]
    return out


def load_state(conn: apsw.Connection) -> tuple[int, bytes] | None:
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'insight_state'").fetchall():
        return None
    row = conn.execute("SELECT cursor, snapshot FROM insight_state WHERE name = 'default'").fetchone()
    return (row[0], bytes(row[1])) if row else None


def save_state(conn: apsw.Connection, cursor: int, snapshot: bytes) -> None:
    conn.execute(
        "INSERT INTO insight_state (name, cursor, snapshot) VALUES ('default', ?, ?)"
        " ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, snapshot = excluded.snapshot",
        (cursor, snapshot),
    )


def prune(conn: apsw.Connection, before_us: int) -> None:
    conn.execute("DELETE FROM insight_traces WHERE ts < ?", (before_us,))


def encode(findings: list[Finding]) -> bytes:
    return orjson.dumps([f.to_json() for f in findings])
