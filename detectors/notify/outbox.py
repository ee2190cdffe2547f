"""The durable outbox: every notification is a row before it is a request.

A flush commits the rendered notification (and the notification log) in one transaction; per-receiver
workers then send pending rows, record every attempt, and mark rows delivered or failed. Pending rows
outlive the process, so a restart picks them up again. The secret and the URL are not stored: they
come from configuration at send time, so rotating a secret or fixing a URL applies to the backlog.

Times are epoch microseconds, like the rest of tracebox.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import apsw

#: Notifications: one row per (receiver, group flush), with its stable delivery id.
OUTBOX_DDL = """
CREATE TABLE notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id TEXT NOT NULL UNIQUE,    -- X-Tracebox-Delivery, the same on every retry
    receiver TEXT NOT NULL,
    channel TEXT NOT NULL,               -- webhook | slack
    group_key TEXT NOT NULL,
    status TEXT NOT NULL,                -- the group's status: firing | resolved
    alert_ids TEXT NOT NULL,             -- JSON list of the alerts in the notification
    body BLOB NOT NULL,
    headers TEXT NOT NULL,               -- JSON object, without signature and delivery headers
    state TEXT NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at_us INTEGER NOT NULL,
    next_attempt_at_us INTEGER NOT NULL,
    give_up_at_us INTEGER NOT NULL,
    delivered_at_us INTEGER
);
CREATE INDEX notify_outbox_pending ON notify_outbox (receiver, group_key, id) WHERE state = 'pending';
CREATE INDEX notify_outbox_created ON notify_outbox (created_at_us);
"""

#: One row per HTTP attempt, for the API and the UI.
ATTEMPTS_DDL = """
CREATE TABLE notify_attempts (
    outbox_id INTEGER NOT NULL REFERENCES notify_outbox (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    at_us INTEGER NOT NULL,
    duration_us INTEGER NOT NULL,
    status_code INTEGER,                 -- NULL when no response came (refused, timeout...)
    error TEXT,
    PRIMARY KEY (outbox_id, attempt)
) WITHOUT ROWID;
"""

#: Silences (see silences.py).
SILENCES_DDL = """
CREATE TABLE notify_silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,              -- JSON list of matcher strings
    starts_at_us INTEGER NOT NULL,
    ends_at_us INTEGER NOT NULL,
    created_by TEXT NOT NULL DEFAULT '',
    comment TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID;
CREATE INDEX notify_silences_ends ON notify_silences (ends_at_us);
"""

#: The notification log (see nflog.py).
NOTIFY_LOG_DDL = """
CREATE TABLE notify_log (
    receiver TEXT NOT NULL,
    group_key TEXT NOT NULL,
    firing TEXT NOT NULL,                -- JSON list of fingerprints
    resolved TEXT NOT NULL,
    sent_at_us INTEGER NOT NULL,
    PRIMARY KEY (receiver, group_key)
) WITHOUT ROWID;
"""

#: Everything above, for one migration step.
NOTIFY_DDL = OUTBOX_DDL + ATTEMPTS_DDL + SILENCES_DDL + NOTIFY_LOG_DDL

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@dataclass(frozen=True)
class Pending:
    id: int
    delivery_id: str
    receiver: str
    group_key: str
    body: bytes
    headers: dict[str, str]
    attempts: int
    next_attempt_at_us: int
    give_up_at_us: int


def enqueue(
    conn: apsw.Connection,
    *,
    receiver: str,
    channel: str,
    group_key: str,
    status: str,
    alert_ids: list[str],
    body: bytes,
    headers: dict[str, str],
    now_us: int,
    give_up_after_us: int,
) -> str:
    delivery_id = uuid.uuid4().hex
    conn.execute(
        "INSERT INTO notify_outbox (delivery_id, receiver, channel, group_key, status, alert_ids, body, headers, "
        "created_at_us, next_attempt_at_us, give_up_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            delivery_id,
            receiver,
            channel,
            group_key,
            status,
            json.dumps(alert_ids),
            body,
            json.dumps(headers),
            now_us,
            now_us,
            now_us + give_up_after_us,
        ),
    )
    return delivery_id


def heads(conn: apsw.Connection, receiver: str) -> list[Pending]:
    """The oldest pending notification of each of the receiver's groups: a group's notifications go
    out one at a time and in order (firing before its resolved), different groups in parallel."""
    rows = conn.execute(
        "SELECT id, delivery_id, receiver, group_key, body, headers, attempts, next_attempt_at_us, give_up_at_us "
        "FROM notify_outbox WHERE id IN (SELECT min(id) FROM notify_outbox "
        "WHERE state = 'pending' AND receiver = ? GROUP BY group_key) ORDER BY next_attempt_at_us, id",
        (receiver,),
    ).fetchall()
    return [Pending(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], r[7], r[8]) for r in rows]


def record_attempt(
    conn: apsw.Connection,
    pending: Pending,
    *,
    at_us: int,
    duration_us: int,
    status_code: int | None,
    error: str | None,
    state: str,
    next_attempt_at_us: int,
) -> None:
    attempt = pending.attempts + 1
    conn.execute(
        "INSERT INTO notify_attempts (outbox_id, attempt, at_us, duration_us, status_code, error) VALUES (?, ?, ?, ?, ?, ?)",
        (pending.id, attempt, at_us, duration_us, status_code, error),
    )
    conn.execute(
        "UPDATE notify_outbox SET attempts = ?, last_error = ?, state = ?, next_attempt_at_us = ?, "
        "delivered_at_us = ? WHERE id = ?",
        (attempt, error, state, next_attempt_at_us, at_us if state == DELIVERED else None, pending.id),
    )


def fail_orphans(conn: apsw.Connection, receivers: list[str], now_us: int) -> int:
    """Give up pending rows whose receiver is no longer configured; returns how many."""
    marks = ",".join("?" * len(receivers))
    conn.execute(
        f"UPDATE notify_outbox SET state = 'failed', last_error = 'receiver no longer configured', "
        f"next_attempt_at_us = ? WHERE state = 'pending' AND receiver NOT IN ({marks})",
        (now_us, *receivers),
    )
    return conn.changes()


def list_deliveries(
    conn: apsw.Connection,
    *,
    receiver: str | None = None,
    state: str | None = None,
    alert_id: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Delivery state for the API and the UI, newest first."""
    where, args = [], []
    for column, value in (("receiver", receiver), ("state", state)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if alert_id is not None:
        where.append("EXISTS (SELECT 1 FROM json_each(alert_ids) WHERE value = ?)")
        args.append(alert_id)
    sql = (
        "SELECT delivery_id, receiver, channel, group_key, status, alert_ids, state, attempts, last_error, "
        "created_at_us, next_attempt_at_us, delivered_at_us FROM notify_outbox"
        + (" WHERE " + " AND ".join(where) if where else "")
        + " ORDER BY id DESC LIMIT ?"
    )
    rows = conn.execute(sql, (*args, limit)).fetchall()
    return [
        {
            "deliveryId": r[0],
            "receiver": r[1],
            "channel": r[2],
            "groupKey": r[3],
            "status": r[4],
            "alertIds": json.loads(r[5]),
            "state": r[6],
            "attempts": r[7],
            "lastError": r[8],
            "createdAt": r[9],
            "nextAttemptAt": r[10] if r[6] == PENDING else None,
            "deliveredAt": r[11],
        }
        for r in rows
    ]


def list_attempts(conn: apsw.Connection, delivery_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT a.attempt, a.at_us, a.duration_us, a.status_code, a.error FROM notify_attempts a "
        "JOIN notify_outbox o ON o.id = a.outbox_id WHERE o.delivery_id = ? ORDER BY a.attempt",
        (delivery_id,),
    ).fetchall()
    return [
        {"attempt": r[0], "at": r[1], "durationUs": r[2], "statusCode": r[3], "error": r[4]} for r in rows
    ]


def prune(conn: apsw.Connection, before_us: int) -> int:
    """Forget delivered and failed notifications created before ``before_us``; returns how many."""
    conn.execute("DELETE FROM notify_outbox WHERE state != 'pending' AND created_at_us < ?", (before_us,))
    return conn.changes()
