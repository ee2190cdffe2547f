"""Alerts and the engine's progress in SQLite (apsw).

``DDL`` goes into the store's migrations. ``commit_progress`` writes alert changes, the engine
snapshot and the span cursor in one transaction, so after a crash the engine resumes from a
snapshot that matches its cursor and no alert change is lost or applied twice.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import apsw
import orjson

from .alerts import AlertChange

DDL = """
CREATE TABLE IF NOT EXISTS alerts (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    service     TEXT NOT NULL,
    operation   TEXT NOT NULL,
    status      TEXT NOT NULL,
    started_at  INTEGER NOT NULL,   -- event time, epoch µs
    ended_at    INTEGER,
    score       REAL NOT NULL,
    body        BLOB NOT NULL       -- the whole alert as JSON
);
CREATE INDEX IF NOT EXISTS alerts_started ON alerts (started_at);
CREATE INDEX IF NOT EXISTS alerts_service_started ON alerts (service, started_at);
CREATE INDEX IF NOT EXISTS alerts_status_started ON alerts (status, started_at);
CREATE TABLE IF NOT EXISTS engine_state (
    name      TEXT PRIMARY KEY,
    cursor    INTEGER NOT NULL,     -- last committed span row the engine has processed
    snapshot  BLOB NOT NULL
);
"""

_UPSERT = """
INSERT INTO alerts (id, kind, service, operation, status, started_at, ended_at, score, body)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET status = excluded.status, ended_at = excluded.ended_at,
    score = excluded.score, body = excluded.body
"""


def upsert_alerts(conn: apsw.Connection, alerts: Iterable[dict[str, Any]]) -> None:
    conn.executemany(
        _UPSERT,
        [
            (
                a["id"],
                a["kind"],
                a["service"],
                a["operation"],
                a["status"],
                a["startedAt"],
                a["endedAt"],
                a["score"],
                orjson.dumps(a, option=orjson.OPT_SERIALIZE_NUMPY),
            )
            for a in alerts
        ],
    )


def save_state(conn: apsw.Connection, cursor: int, snapshot: bytes, name: str = "default") -> None:
    conn.execute(
        "INSERT INTO engine_state (name, cursor, snapshot) VALUES (?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor, snapshot = excluded.snapshot",
        (name, cursor, snapshot),
    )


def load_state(conn: apsw.Connection, name: str = "default") -> tuple[int, bytes] | None:
    """(cursor, snapshot) or None before the engine's first save."""
    row = conn.execute("SELECT cursor, snapshot FROM engine_state WHERE name = ?", (name,)).fetchone()
    return (row[0], bytes(row[1])) if row else None


def commit_progress(
    conn: apsw.Connection, cursor: int, snapshot: bytes, changes: Iterable[AlertChange], name: str = "default"
) -> None:
    """Alert changes, snapshot and cursor, all or nothing."""
    with conn:
        upsert_alerts(conn, (c.alert for c in changes))
        save_state(conn, cursor, snapshot, name)


def list_alerts(
    conn: apsw.Connection,
    status: str | None = None,
    kind: str | None = None,
    service: str | None = None,
    start: int | None = None,
    end: int | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Newest first. ``start``/``end`` (epoch µs) keep alerts whose [startedAt, endedAt] overlaps
    them; a firing alert is open-ended."""
    where, args = [], []
    for column, value in (("status", status), ("kind", kind), ("service", service)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if end is not None:
        where.append("started_at <= ?")
        args.append(end)
    if start is not None:
        where.append("(ended_at IS NULL OR ended_at >= ?)")
        args.append(start)
    sql = "SELECT body FROM alerts"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY started_at DESC, id LIMIT ?"
    return [orjson.loads(body) for (body,) in conn.execute(sql, (*args, limit))]


def get_alert(conn: apsw.Connection, alert_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT body FROM alerts WHERE id = ?", (alert_id,)).fetchone()
    return orjson.loads(row[0]) if row else None
