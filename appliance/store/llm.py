"""Reads over ``llm_calls``: usage and cost grouped, finish reasons, time to first token, top traces."""

from __future__ import annotations

from dataclasses import dataclass

import apsw

#: Columns a usage report can group by directly; any other tag is read from the span's JSON.
GROUP_COLUMNS = {
    "model": "coalesce(c.response_model, c.request_model)",
    "provider": "c.provider",
    "service": "c.service",
    "operation": "c.name",
    "user": "c.user_id",
    "tenant": "c.tenant_id",
    "conversation": "c.conversation_id",
}

_SUMS = (
    "count(*), sum(c.input_tokens), sum(c.output_tokens), sum(c.cache_read_tokens), sum(c.cache_write_tokens),"
    " sum(c.reasoning_tokens), sum(c.cost_usd), sum(c.cost_source = 'reported'), avg(c.duration)"
)
_SUM_KEYS = (
    "calls",
    "inputTokens",
    "outputTokens",
    "cacheReadTokens",
    "cacheWriteTokens",
    "reasoningTokens",
    "costUsd",
    "reportedCostCalls",
    "avgDurationUs",
)


@dataclass(frozen=True, slots=True)
class LlmWindow:
    """A time window (epoch µs, inclusive) with optional filters every LLM read takes."""

    lo: int
    hi: int
    service: str | None = None
    model: str | None = None

    def where(self) -> tuple[str, tuple]:
        sql = "c.ts BETWEEN ? AND ?"
        args: list = [self.lo, self.hi]
        if self.service:
            sql += " AND c.service = ?"
            args.append(self.service)
        if self.model:
            sql += " AND coalesce(c.response_model, c.request_model) = ?"
            args.append(self.model)
        return sql, tuple(args)


def group_expression(group_by: str) -> tuple[str, tuple, str]:
    """SQL for a grouping key: a known column, or ``tag:<key>`` read from the span's tags."""
    if group_by in GROUP_COLUMNS:
        return GROUP_COLUMNS[group_by], (), ""
    if group_by.startswith("tag:") and len(group_by) > 4:
        key = group_by[4:].replace('"', "")
        return "json_extract(span_json(s.json), ?)", (f'$.tags."{key}"',), " JOIN spans s ON s.id = c.span_id"
    raise ValueError(f"groupBy should be one of {', '.join(GROUP_COLUMNS)} or tag:<key>, got {group_by!r}")


def usage(conn: apsw.Connection, window: LlmWindow, group_by: str = "model") -> list[dict]:
    """Tokens and cost summed per group, most expensive first."""
    expr, expr_args, join = group_expression(group_by)
    where, args = window.where()
    sql = (
        f"SELECT {expr} AS k, {_SUMS} FROM llm_calls c{join} WHERE {where}"
        " GROUP BY k ORDER BY sum(c.cost_usd) DESC NULLS LAST, count(*) DESC"
    )
    return [_row(row) for row in conn.execute(sql, (*expr_args, *args))]


def usage_over_time(
    conn: apsw.Connection, window: LlmWindow, bucket_us: int, group_by: str = "model"
) -> list[dict]:
    """The same sums per time bucket and group, oldest bucket first."""
    expr, expr_args, join = group_expression(group_by)
    where, args = window.where()
    sql = (
        f"SELECT (c.ts / ?) * ? AS bucket, {expr} AS k, {_SUMS} FROM llm_calls c{join} WHERE {where}"
        " GROUP BY bucket, k ORDER BY bucket, k"
    )
    out = []
    for bucket, *rest in conn.execute(sql, (bucket_us, bucket_us, *expr_args, *args)):
        item = _row(rest)
        item["bucket"] = bucket
        out.append(item)
    return out


def _row(row) -> dict:
    key, *sums = row
    item = {"key": key}
    for name, value in zip(_SUM_KEYS, sums, strict=True):
        item[name] = value if value is not None else 0
    item["avgDurationUs"] = round(item["avgDurationUs"])
    return item


def finish_reasons(conn: apsw.Connection, window: LlmWindow) -> list[dict]:
    """Counts of each finish reason per model; a call with several reasons counts once for each."""
    where, args = window.where()
    sql = (
        "SELECT coalesce(c.response_model, c.request_model), r.value, count(*)"
        f" FROM llm_calls c, json_each(c.finish_reasons) r WHERE {where} GROUP BY 1, 2 ORDER BY 1, 3 DESC"
    )
    return [{"model": m, "reason": r, "count": n} for m, r, n in conn.execute(sql, args)]


def ttft(conn: apsw.Connection, window: LlmWindow) -> list[dict]:
    """Time-to-first-token percentiles per model, in microseconds."""
    where, args = window.where()
    sql = (
        f"SELECT coalesce(c.response_model, c.request_model), c.ttft_us FROM llm_calls c WHERE {where}"
        " AND c.ttft_us IS NOT NULL ORDER BY 1, 2"
    )
    by_model: dict[str, list[int]] = {}
    for model, value in conn.execute(sql, args):
        by_model.setdefault(model, []).append(value)
    out = []
    for model, values in by_model.items():
        p50, p90, p99 = _percentiles(values, (50, 90, 99))
        out.append(
            {"model": model, "count": len(values), "p50": round(p50), "p90": round(p90), "p99": round(p99)}
        )
    return out


def top_traces(conn: apsw.Connection, window: LlmWindow, limit: int = 10) -> list[dict]:
    """The traces whose LLM calls cost the most."""
    where, args = window.where()
    sql = (
        "SELECT c.trace_id, sum(c.cost_usd), sum(c.input_tokens), sum(c.output_tokens), count(*), min(c.ts),"
        f" group_concat(DISTINCT c.service) FROM llm_calls c WHERE {where}"
        " GROUP BY c.trace_id ORDER BY 2 DESC NULLS LAST LIMIT ?"
    )
    keys = ("traceId", "costUsd", "inputTokens", "outputTokens", "calls", "timestamp", "services")
    rows = conn.execute(sql, (*args, limit))
    return [dict(zip(keys, row, strict=True)) | {"services": (row[6] or "").split(",")} for row in rows]


def trace_usage(conn: apsw.Connection, trace_id: str) -> dict:
    """Total LLM tokens and cost of one trace (for the trace page)."""
    sql = f"SELECT {_SUMS} FROM llm_calls c WHERE c.trace_id = ?"
    item = _row((trace_id, *conn.execute(sql, (trace_id,)).fetchall()[0]))
    item["traceId"] = item.pop("key")
    return item


def _percentiles(values: list[int], ranks: tuple[int, ...]) -> list[float]:
    """Percentiles of ascending ``values``, interpolated linearly between ranks (numpy's default),
    without loading numpy into the server for three numbers."""
    last = len(values) - 1
    out = []
    for rank in ranks:
        position = last * rank / 100
        below = int(position)
        above = min(below + 1, last)
        out.append(values[below] + (values[above] - values[below]) * (position - below))
    return out
