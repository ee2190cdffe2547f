"""Zipkin's SpanStore, ServiceAndSpanNames and AutocompleteTags roles: reads, on any read connection."""

from __future__ import annotations

from collections.abc import Iterator

import apsw

from tracebox.appliance.model import Span, normalize_trace_id
from tracebox.appliance.query import QueryRequest
from tracebox.appliance.store import tag_index
from tracebox.appliance.store.rows import (
    FLAG_ERROR,
    FLAG_SHARED,
    MAX_INDEXED_VALUE,
    SPAN_COLUMNS,
    span_from_row,
    tag_hash,
    trace_low,
)
from tracebox.appliance.store.slots import NEWEST_FIRST, SLOT, time_window
from tracebox.appliance.trace import merge_trace

#: A search stops looking after this many candidate traces, so a pathological query stays bounded.
MAX_CANDIDATES = 20_000
#: Beyond this many services, a tag search without serviceName scans spans instead of merging
#: one index range per service.
MAX_TAG_MERGE = 256
#: Beyond this many span names, a search by serviceName alone scans the time index instead of
#: reading the service+name index for each of them.
MAX_NAME_MERGE = 64


def get_trace(conn: apsw.Connection, trace_id: str, strict: bool) -> list[Span]:
    """All spans of a trace (merged), or an empty list. ``trace_id`` must be valid hex."""
    trace_id = normalize_trace_id(trace_id)
    spans = _trace_rows(conn, trace_low(trace_id))
    if strict:
        spans = [s for s in spans if s["traceId"] == trace_id]
    return merge_trace(spans, strict_trace_id=strict) if spans else []


def get_traces(conn: apsw.Connection, request: QueryRequest, strict: bool) -> list[list[Span]]:
    """The newest traces matching the request, newest first, at most ``request.limit``."""
    results: list[list[Span]] = []
    seen: set[int] = set()
    for low in _candidates(conn, request):
        if low in seen:
            continue
        seen.add(low)
        if len(seen) > MAX_CANDIDATES:
            break
        for trace in _group(_trace_rows(conn, low), strict):
            trace = merge_trace(trace, strict_trace_id=strict)
            if request.matches(trace):
                results.append(trace)
        if len(results) >= request.limit:
            break
    return results[: request.limit]


def get_many(conn: apsw.Connection, trace_ids: list[str], strict: bool) -> list[list[Span]]:
    traces = []
    for trace_id in trace_ids:
        trace = get_trace(conn, trace_id, strict)
        if trace:
            traces.append(trace)
    return traces


def _trace_rows(conn: apsw.Connection, low: int) -> list[Span]:
    sql = f"SELECT {SPAN_COLUMNS} FROM spans WHERE trace_low = ? ORDER BY id"
    return [span_from_row(*row) for row in conn.execute(sql, (low,))]


def _group(spans: list[Span], strict: bool) -> list[list[Span]]:
    """One trace per full id when strict; all spans sharing the low 64 bits otherwise."""
    if not strict:
        return [spans]
    by_id: dict[str, list[Span]] = {}
    for span in spans:
        by_id.setdefault(span["traceId"], []).append(span)
    return list(by_id.values())


def _candidates(conn: apsw.Connection, q: QueryRequest) -> Iterator[int]:
    """Trace keys, newest first, from the most selective index that every match must appear in.

    Each driver below is a necessary condition of the request (``serviceName`` scopes every other
    condition, so the driving row may carry it); the exact test runs on the whole trace afterwards.
    """
    lo, hi = q.window_us
    service = q.service_name
    scope = " AND service = ?" if service else ""
    scope_args: tuple = (service,) if service else ()
    tag_terms = [(k, v) for k, v in q.annotation_query.items() if v and len(v) <= MAX_INDEXED_VALUE]
    duration_sql, duration_args = _duration(q)
    if tag_terms:
        key, value = tag_terms[0]
        yield from _tag_candidates(conn, key, value, service, lo, hi)
        return
    window, window_args = time_window(lo, hi)
    if q.span_name and service:
        sql = f"SELECT trace_low FROM spans WHERE service = ? AND name = ? AND {window}{duration_sql}"
        args = (service, q.span_name, *window_args, *duration_args)
    elif q.remote_service_name:
        sql = f"SELECT trace_low FROM spans WHERE remote_service = ? AND {window}{scope}{duration_sql}"
        args = (q.remote_service_name, *window_args, *scope_args, *duration_args)
    elif service:
        yield from _service_candidates(conn, service, window, window_args, duration_sql, duration_args)
        return
    else:
        name_sql = " AND name = ?" if q.span_name else ""
        name_args = (q.span_name,) if q.span_name else ()
        sql = f"SELECT trace_low FROM spans WHERE {window}{name_sql}{duration_sql}"
        args = (*window_args, *name_args, *duration_args)
    for (low,) in conn.execute(f"{sql} {NEWEST_FIRST}", args):
        yield low


def _service_candidates(
    conn: apsw.Connection,
    service: str,
    window: str,
    window_args: tuple,
    duration_sql: str,
    duration_args: tuple,
) -> Iterator[int]:
    """Traces with a span of ``service`` (and the duration bounds), newest first, from the
    service+name index: all of the service's span names at once, over runs of time slots that
    double in length going back, so a search that is answered in the newest slots reads only those
    and one that is not reads each slot once. (A second index by service alone cost every stored
    span ~12 % of the writer's work and of its WAL, and ~10 % of its disk.)"""
    lo_slot, hi_slot, *times = window_args  # ``time_window``'s: slots, then timestamps
    names = _names_in_index(conn, service, MAX_NAME_MERGE + 1)
    if not names:  # no span of the service is stored
        return
    if len(names) > MAX_NAME_MERGE:
        # "+service": not by the service+name index, which would sort all of the service's spans
        sql = f"SELECT trace_low FROM spans WHERE {window}{duration_sql} AND +service = ? {NEWEST_FIRST}"
        for (low,) in conn.execute(sql, (*window_args, *duration_args, service)):
            yield low
        return
    named = [name for name in names if name is not None]
    parts = []
    if named:
        marks = ",".join("?" * len(named))
        parts.append((f"name IN ({marks})", named))
    if None in names:
        parts.append(("name IS NULL", []))
    sql = " UNION ALL ".join(
        f"SELECT {SLOT}, ts, trace_low FROM spans WHERE service = ? AND {names_sql} AND {window}{duration_sql}"
        for names_sql, _ in parts
    )
    top, width = hi_slot, 1
    while top >= lo_slot:
        bottom = max(lo_slot, top - width + 1)
        args = [arg for _, values in parts for arg in (service, *values, bottom, top, *times, *duration_args)]
        for _slot, _ts, low in conn.execute(f"{sql} ORDER BY 1 DESC, 2 DESC", args):
            yield low
        top, width = bottom - 1, width * 2


def _names_in_index(conn: apsw.Connection, service: str, limit: int) -> list[str | None]:
    """The span names ``service``'s stored spans have (None: spans without a name), up to
    ``limit``: read from the service+name index, one seek per name."""
    names: list[str | None] = []
    if conn.execute("SELECT 1 FROM spans WHERE service = ? AND name IS NULL LIMIT 1", (service,)).fetchall():
        names.append(None)
    name = conn.execute("SELECT min(name) FROM spans WHERE service = ?", (service,)).fetchall()[0][0]
    while name is not None and len(names) < limit:
        names.append(name)
        name = conn.execute(
            "SELECT min(name) FROM spans WHERE service = ? AND name > ?", (service, name)
        ).fetchall()[0][0]
    return names


def _tag_candidates(
    conn: apsw.Connection, key: str, value: str, service: str | None, lo: int, hi: int
) -> Iterator[int]:
    """Traces with ``key=value`` (on ``service``'s spans), newest first: the index's rows for the
    service, or without a service those of every known service, merged."""
    if service:
        services: list[str | None] = [service]
    else:
        services = [row[0] for row in conn.execute("SELECT service FROM service_names")]
        if len(services) > MAX_TAG_MERGE:
            window, window_args = time_window(lo, hi)
            for (low,) in conn.execute(
                f"SELECT trace_low FROM spans WHERE {window} {NEWEST_FIRST}", window_args
            ):
                yield low
            return
        services.append(None)  # spans without a service
    yield from tag_index.newest_first(conn, [tag_hash(s, key, value) for s in services], lo, hi)


def _duration(q: QueryRequest) -> tuple[str, tuple]:
    """Duration bounds for a driver on spans: valid only when the driving span carries the scope.

    A span stored without a duration may get one from a late fragment, so it stays a candidate.
    """
    if q.min_duration is None or (q.service_name is None and (q.span_name or q.remote_service_name)):
        return "", ()
    if q.max_duration is None:
        return " AND (duration >= ? OR duration IS NULL)", (q.min_duration,)
    return " AND (duration BETWEEN ? AND ? OR duration IS NULL)", (q.min_duration, q.max_duration)


def service_names(conn: apsw.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT service FROM service_names ORDER BY service")]


def span_names(conn: apsw.Connection, service: str) -> list[str]:
    sql = "SELECT name FROM span_names WHERE service = ? ORDER BY name"
    return [r[0] for r in conn.execute(sql, (service.lower(),))]


def remote_service_names(conn: apsw.Connection, service: str) -> list[str]:
    sql = "SELECT remote_service FROM remote_service_names WHERE service = ? ORDER BY remote_service"
    return [r[0] for r in conn.execute(sql, (service.lower(),))]


def autocomplete_values(conn: apsw.Connection, key: str) -> list[str]:
    sql = "SELECT value FROM autocomplete_tags WHERE key = ? ORDER BY value"
    return [r[0] for r in conn.execute(sql, (key,))]


def link_span(
    span_id: str, parent_id: str | None, kind: str | None, service: str | None, remote: str | None, flags: int
) -> Span:
    """A span rebuilt from index columns with just what the dependency linker reads."""
    span: Span = {"traceId": "", "id": span_id}
    if parent_id:
        span["parentId"] = parent_id
    if kind:
        span["kind"] = kind
    if service:
        span["localEndpoint"] = {"serviceName": service}
    if remote:
        span["remoteEndpoint"] = {"serviceName": remote}
    if flags & FLAG_ERROR:
        span["tags"] = {"error": ""}
    if flags & FLAG_SHARED:
        span["shared"] = True
    return span


def dependency_spans(conn: apsw.Connection, lo_us: int, hi_us: int) -> Iterator[list[Span]]:
    """The spans of each trace with a span in the window, reduced to what the linker reads."""
    window, window_args = time_window(lo_us, hi_us)
    sql = (
        "SELECT trace_low, span_id, parent_id, kind, service, remote_service, flags FROM spans"
        f" WHERE {window} ORDER BY trace_low"
    )
    current: int | None = None
    trace: list[Span] = []
    for low, span_id, parent_id, kind, service, remote, flags in conn.execute(sql, window_args):
        if low != current:
            if trace:
                yield trace
            current, trace = low, []
        trace.append(link_span(span_id, parent_id, kind, service, remote, flags))
    if trace:
        yield trace


def ping(conn: apsw.Connection) -> int:
    """A cheap read proving the database answers."""
    return conn.execute("SELECT count(*) FROM sqlite_master").fetchall()[0][0]
