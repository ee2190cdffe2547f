"""Tail sampling's tables and SQL: decisions, per-service counters, and deleting dropped traces.

The tables are a component schema of their own (``Store.ensure_schema("sampling", SCHEMA)``), so
they evolve apart from the core migrations. Every function takes a connection: the read functions
run through ``Store.read``, the write functions inside ``Store.write`` (the writer thread's group
commit).

Deleting a trace's tag postings needs no extra index: their chunk and hash are recomputed from the
spans' ids and stored JSON (``tag_index.delete_for``), so each list is found by its primary key.
"""

from __future__ import annotations

from dataclasses import dataclass

import apsw
import orjson

from tracebox.appliance.store import tag_index
from tracebox.appliance.store.rows import trace_low

DDL = """
CREATE TABLE IF NOT EXISTS sampling_state (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
-- A decision per trace (by its low 64 bits, the key spans are grouped by), remembered for a while
-- so that late spans follow it and a restart does not decide (or count) a trace twice.
CREATE TABLE IF NOT EXISTS sampling_decisions (
    trace_low INTEGER PRIMARY KEY,
    kept INTEGER NOT NULL,
    reason TEXT NOT NULL,
    decided_at REAL NOT NULL            -- wall clock, epoch seconds
) WITHOUT ROWID;
-- Traces seen and kept per service (a trace counts once for each service it touches).
CREATE TABLE IF NOT EXISTS sampling_services (
    service TEXT PRIMARY KEY,
    seen INTEGER NOT NULL DEFAULT 0,
    kept INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- Totals: 'seen', 'kept', 'kept:<policy>', 'deleted_spans'.
CREATE TABLE IF NOT EXISTS sampling_totals (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""

#: The sampling component's tables, by version (see ``schema.migrate``).
SCHEMA = [DDL]


@dataclass(slots=True)
class SpanRow:
    """What tail sampling needs of one committed span."""

    id: int
    trace_low: int
    trace_id: str
    parent_id: str | None
    service: str | None
    name: str | None
    ts: int | None
    duration: int | None
    flags: int
    tags: dict | None  # only read when a policy looks at tags
    cost_usd: float | None


_READ = (
    "SELECT s.id, s.trace_low, s.trace_id, s.parent_id, s.service, s.name, s.ts, s.duration, s.flags, {json},"
    " c.cost_usd FROM spans s LEFT JOIN llm_calls c ON c.span_id = s.id WHERE s.id > ? ORDER BY s.id LIMIT ?"
)


def read_after(conn: apsw.Connection, cursor: int, limit: int, with_tags: bool) -> list[SpanRow]:
    """Committed spans after ``cursor`` in commit order; tags parsed only when ``with_tags``."""
    sql = _READ.format(json="span_json(s.json)" if with_tags else "NULL")
    out = []
    for row in conn.execute(sql, (cursor, limit)):
        body = row[9]
        tags = orjson.loads(body).get("tags") if body is not None else None
        out.append(SpanRow(*row[:9], tags, row[10]))
    return out


def engine_cursor(conn: apsw.Connection) -> int | None:
    """The anomaly engine's persisted cursor (None before its first save or without its tables)."""
    try:
        row = conn.execute("SELECT cursor FROM engine_state WHERE name = 'default'").fetchall()
    except apsw.SQLError:  # no engine_state table: the engine never ran on this database
        return None
    return row[0][0] if row else None


def alerted_traces(conn: apsw.Connection, limit: int = 2000) -> set[int]:
    """The traces (low 64 bits) the newest alerts point to."""
    try:
        rows = conn.execute(
            "SELECT j.value FROM (SELECT body FROM alerts ORDER BY started_at DESC LIMIT ?) a,"
            " json_each(CAST(a.body AS TEXT), '$.traceIds') j",
            (limit,),
        ).fetchall()
    except apsw.SQLError:  # no alerts table: the engine is off
        return set()
    out = set()
    for (trace_id,) in rows:
        try:
            out.add(trace_low(str(trace_id)))
        except ValueError:
            continue
    return out


def load_state(
    conn: apsw.Connection, remember_since: float
) -> tuple[int | None, dict[int, bool], bytes | None]:
    """(cursor, recent decisions, saved latency sketches) as last committed."""
    state = dict(conn.execute("SELECT name, value FROM sampling_state").fetchall())
    decisions = {
        low: bool(kept)
        for low, kept in conn.execute(
            "SELECT trace_low, kept FROM sampling_decisions WHERE decided_at >= ?", (remember_since,)
        )
    }
    return state.get("cursor"), decisions, state.get("quantiles")


@dataclass(slots=True)
class Decided:
    trace_low: int
    kept: bool
    reason: str
    services: frozenset[str]


def record(
    conn: apsw.Connection,
    decided: list[Decided],
    now: float,
    cursor: int,
    quantiles: bytes | None = None,
    forget_before: float | None = None,
) -> None:
    """Persist decisions, counters and the cursor together (writer thread)."""
    if decided:
        conn.executemany(
            "INSERT INTO sampling_decisions (trace_low, kept, reason, decided_at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (trace_low) DO UPDATE SET kept = excluded.kept, reason = excluded.reason,"
            " decided_at = excluded.decided_at",
            [(d.trace_low, int(d.kept), d.reason, now) for d in decided],
        )
        per_service: dict[str, list[int]] = {}
        totals: dict[str, int] = {}
        for d in decided:
            totals["seen"] = totals.get("seen", 0) + 1
            if d.kept:
                totals["kept"] = totals.get("kept", 0) + 1
                totals[f"kept:{d.reason}"] = totals.get(f"kept:{d.reason}", 0) + 1
            for service in d.services:
                counts = per_service.setdefault(service, [0, 0])
                counts[0] += 1
                counts[1] += int(d.kept)
        conn.executemany(
            "INSERT INTO sampling_services (service, seen, kept) VALUES (?, ?, ?) ON CONFLICT (service)"
            " DO UPDATE SET seen = seen + excluded.seen, kept = kept + excluded.kept",
            [(s, seen, kept) for s, (seen, kept) in per_service.items()],
        )
        _add_totals(conn, totals)
    conn.execute(
        "INSERT INTO sampling_state (name, value) VALUES ('cursor', ?)"
        " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
        (cursor,),
    )
    if quantiles is not None:
        conn.execute(
            "INSERT INTO sampling_state (name, value) VALUES ('quantiles', ?)"
            " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (quantiles,),
        )
    if forget_before is not None:
        conn.execute("DELETE FROM sampling_decisions WHERE decided_at < ?", (forget_before,))


def _add_totals(conn: apsw.Connection, totals: dict[str, int]) -> None:
    conn.executemany(
        "INSERT INTO sampling_totals (name, n) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET n = n + excluded.n",
        list(totals.items()),
    )


def stored_spans(conn: apsw.Connection, ids: list[int]) -> list[tuple]:
    """The given spans that still exist, as ``tag_index.delete_for`` takes them."""
    out: list[tuple] = []
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        out += conn.execute(f"{tag_index.STORED_SPANS}({marks})", chunk).fetchall()
    return out


def delete_spans(
    conn: apsw.Connection, ids: list[int], stored: list[tuple], rescued: list[Decided] = ()
) -> int:
    """Delete spans (and their tag index and LLM rows) by id, in the writer thread; return how many.

    ``stored`` are the spans as ``stored_spans`` read them (for their tag rows).

    ``rescued`` are traces found to be kept at the last moment (an alert now points to them): their
    decisions and counters are updated in the same transaction.
    """
    tag_index.delete_for(conn, stored)
    deleted = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM llm_calls WHERE span_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM spans WHERE id IN ({marks})", chunk)
        deleted += conn.changes()
    totals = {"deleted_spans": deleted} if deleted else {}
    for d in rescued:
        conn.execute(
            "UPDATE sampling_decisions SET kept = 1, reason = ? WHERE trace_low = ?", (d.reason, d.trace_low)
        )
        conn.executemany(
            "UPDATE sampling_services SET kept = kept + 1 WHERE service = ?", [(s,) for s in d.services]
        )
        totals["kept"] = totals.get("kept", 0) + 1
        totals[f"kept:{d.reason}"] = totals.get(f"kept:{d.reason}", 0) + 1
    if totals:
        _add_totals(conn, totals)
    return deleted


def counters(conn: apsw.Connection) -> dict:
    """Per-service seen/kept and the totals, as the API and the UI show them."""
    try:
        services = conn.execute(
            "SELECT service, seen, kept FROM sampling_services ORDER BY seen DESC, service"
        ).fetchall()
        totals = dict(conn.execute("SELECT name, n FROM sampling_totals").fetchall())
    except apsw.SQLError:  # tables not created: sampling never ran on this database
        services, totals = [], {}
    return {
        "services": [
            {
                "serviceName": s,
                "seen": seen,
                "kept": kept,
                "keptShare": round(kept / seen, 4) if seen else None,
            }
            for s, seen, kept in services
        ],
        "seen": totals.get("seen", 0),
        "kept": totals.get("kept", 0),
        "keptBy": {k.split(":", 1)[1]: v for k, v in sorted(totals.items()) if k.startswith("kept:")},
        "deletedSpans": totals.get("deleted_spans", 0),
    }
