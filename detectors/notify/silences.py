"""Silences: matchers and a time range during which matching firing alerts are not notified.

They live in SQLite so the API, the CLI and a restarted tracebox all see the same ones; the
dispatcher reads the active ones at every flush. A silence mutes firing alerts only: the resolved
notification of an alert a receiver was told about still goes out, so nobody is left with an alert
that seems to fire forever.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import apsw

from .matchers import Matcher, all_match, parse_matchers


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: tuple[Matcher, ...]
    starts_at_us: int
    ends_at_us: int
    created_by: str
    comment: str

    def active(self, now_us: int) -> bool:
        return self.starts_at_us <= now_us < self.ends_at_us

    def mutes(self, labels: Mapping[str, str], now_us: int) -> bool:
        return self.active(now_us) and all_match(self.matchers, labels)

    def to_json(self, now_us: int) -> dict[str, Any]:
        state = "active" if self.active(now_us) else "pending" if now_us < self.starts_at_us else "expired"
        return {
            "id": self.id,
            "matchers": [str(m) for m in self.matchers],
            "startsAt": self.starts_at_us,
            "endsAt": self.ends_at_us,
            "createdBy": self.created_by,
            "comment": self.comment,
            "state": state,
        }


def create(
    conn: apsw.Connection,
    matchers: list[str],
    starts_at_us: int,
    ends_at_us: int,
    created_by: str = "",
    comment: str = "",
) -> Silence:
    parsed = parse_matchers(matchers)
    if not parsed:
        raise ValueError("a silence needs at least one matcher")
    if ends_at_us <= starts_at_us:
        raise ValueError("a silence must end after it starts")
    silence = Silence(uuid.uuid4().hex, parsed, starts_at_us, ends_at_us, created_by, comment)
    conn.execute(
        "INSERT INTO notify_silences (id, matchers, starts_at_us, ends_at_us, created_by, comment) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (silence.id, json.dumps([str(m) for m in parsed]), starts_at_us, ends_at_us, created_by, comment),
    )
    return silence


def expire(conn: apsw.Connection, silence_id: str, now_us: int) -> bool:
    """End a silence now; False when there is no such silence or it had already ended."""
    conn.execute(
        "UPDATE notify_silences SET ends_at_us = max(?, starts_at_us) WHERE id = ? AND ends_at_us > ?",
        (now_us, silence_id, now_us),
    )
    return conn.changes() > 0


def list_silences(conn: apsw.Connection, now_us: int, include_expired: bool = False) -> list[Silence]:
    sql = "SELECT id, matchers, starts_at_us, ends_at_us, created_by, comment FROM notify_silences"
    args: tuple = ()
    if not include_expired:
        sql += " WHERE ends_at_us > ?"
        args = (now_us,)
    rows = conn.execute(sql + " ORDER BY starts_at_us, id", args).fetchall()
    return [Silence(r[0], parse_matchers(json.loads(r[1])), r[2], r[3], r[4], r[5]) for r in rows]
