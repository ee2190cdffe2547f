"""The notification log: what each receiver was last told about each group, and when.

It decides whether a group's flush notifies (Alertmanager's DedupStage), and it lives in SQLite,
written in the same transaction as the outbox row, so a restart neither repeats a notification
early nor forgets to send a resolved one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import apsw


@dataclass(frozen=True)
class Entry:
    firing: frozenset[str]  # fingerprints notified as firing
    resolved: frozenset[str]  # fingerprints notified as resolved
    sent_at_us: int


def needs_update(
    entry: Entry | None,
    firing: set[str],
    resolved: set[str],
    *,
    send_resolved: bool,
    repeat_interval_us: int,
    now_us: int,
) -> bool:
    if entry is None:
        return bool(firing)  # never told: only news of firing alerts is worth a first message
    if not firing <= entry.firing:
        return True  # a new firing alert
    if not firing:
        # All resolved: tell the receiver, but only if it had heard of any of them firing.
        return bool(entry.firing)
    if send_resolved and not resolved <= entry.resolved:
        return True
    return now_us - entry.sent_at_us >= repeat_interval_us  # unchanged: repeat when due


def load(conn: apsw.Connection, receiver: str, group_key: str) -> Entry | None:
    row = conn.execute(
        "SELECT firing, resolved, sent_at_us FROM notify_log WHERE receiver = ? AND group_key = ?",
        (receiver, group_key),
    ).fetchone()
    if row is None:
        return None
    return Entry(frozenset(json.loads(row[0])), frozenset(json.loads(row[1])), row[2])


def save(conn: apsw.Connection, receiver: str, group_key: str, entry: Entry) -> None:
    """Record a notification; a group with nothing firing is forgotten, which ``needs_update`` treats
    the same as an entry with nothing firing, so the log does not grow with every resolved group."""
    if not entry.firing:
        conn.execute("DELETE FROM notify_log WHERE receiver = ? AND group_key = ?", (receiver, group_key))
        return
    conn.execute(
        "INSERT INTO notify_log (receiver, group_key, firing, resolved, sent_at_us) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (receiver, group_key) DO UPDATE SET "
        "firing = excluded.firing, resolved = excluded.resolved, sent_at_us = excluded.sent_at_us",
        (
            receiver,
            group_key,
            json.dumps(sorted(entry.firing)),
            json.dumps(sorted(entry.resolved)),
            entry.sent_at_us,
        ),
    )
