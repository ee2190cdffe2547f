"""Retention: old spans go by age and by database size, in small batches that never stall ingest.

Each batch is one job in the writer's group commit, so ingest commits interleave with deletions.
A span's tag postings are found by values recomputed from its id and stored JSON (the function that
made them at ingest), and its LLM row by its id, so nothing is left behind. Freed pages go back to
the file system through incremental vacuum (the database is created with ``auto_vacuum =
INCREMENTAL``); a database made before that keeps its size and reuses the free pages.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import apsw

from tracebox.appliance.background import repeat
from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.store import tag_index
from tracebox.appliance.store.slots import SLOT, SLOT_US

log = logging.getLogger(__name__)

BATCH_SPANS = 2000
VACUUM_PAGES = 2000


@dataclass(frozen=True)
class Usage:
    """Bytes in use by the database pages (free pages excluded), and the free pages."""

    used_bytes: int
    free_pages: int


def usage(conn: apsw.Connection) -> Usage:
    page_size = conn.execute("PRAGMA page_size").fetchall()[0][0]
    pages = conn.execute("PRAGMA page_count").fetchall()[0][0]
    free = conn.execute("PRAGMA freelist_count").fetchall()[0][0]
    return Usage((pages - free) * page_size, free)


def ids_before(conn: apsw.Connection, cutoff_us: int, limit: int = BATCH_SPANS) -> list[int]:
    """The oldest spans (by timestamp) older than ``cutoff_us``; spans without one go by id."""
    rows = conn.execute(
        f"SELECT id FROM spans WHERE {SLOT} <= ? AND ts < ? ORDER BY {SLOT}, ts LIMIT ?",
        (cutoff_us // SLOT_US, cutoff_us, limit),
    ).fetchall()
    return [r[0] for r in rows]


def oldest_ids(conn: apsw.Connection, limit: int = BATCH_SPANS) -> list[int]:
    """The oldest spans whatever their age, for the size cap."""
    if limit <= 0:
        return []
    return [r[0] for r in conn.execute(f"SELECT id FROM spans ORDER BY {SLOT}, ts LIMIT ?", (limit,))]


def delete_spans(conn: apsw.Connection, ids: list[int]) -> int:
    """Delete spans with their tag-index and LLM rows (writer thread); return how many went."""
    deleted = 0
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        marks = ",".join("?" * len(chunk))
        tag_index.delete_for(conn, conn.execute(f"{tag_index.STORED_SPANS}({marks})", chunk))
        conn.execute(f"DELETE FROM llm_calls WHERE span_id IN ({marks})", chunk)
        conn.execute(f"DELETE FROM spans WHERE id IN ({marks})", chunk)
        deleted += conn.changes()
    return deleted


def prune_names(conn: apsw.Connection, cutoff_us: int) -> int:
    """Names last seen before the cutoff (their spans are gone) leave the lists the UI offers."""
    removed = 0
    for table in ("service_names", "span_names", "remote_service_names", "autocomplete_tags"):
        conn.execute(f"DELETE FROM {table} WHERE last_ts < ?", (cutoff_us,))
        removed += conn.changes()
    return removed


def release(conn: apsw.Connection, pages: int = VACUUM_PAGES) -> None:
    """Give up to ``pages`` free pages back to the file system (no-op without incremental vacuum)."""
    conn.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()


class Retention:
    """Enforces ``max_age_s`` (0: keep forever) and ``max_bytes`` (0: no cap) every ``every_s``."""

    def __init__(self, store, max_age_s: float, max_bytes: int, every_s: float = 60.0) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self.every_s = every_s
        self.deleted = 0
        self.runs = 0

    @property
    def enabled(self) -> bool:
        return bool(self.max_age_s or self.max_bytes)

    async def run(self, stopping: asyncio.Event) -> None:
        async def round_() -> bool:
            with contextlib.suppress(Overloaded, StoreUnavailable):  # busy or disk full: next round
                await self.once(stopping)
            return False  # rest a full interval between rounds

        await repeat(round_, stopping, self.every_s, "retention round")

    async def once(self, stopping: asyncio.Event | None = None) -> int:
        """One round: by age, then by size; returns the spans deleted."""
        deleted = 0
        if self.max_age_s:
            cutoff = int((time.time() - self.max_age_s) * 1_000_000)
            deleted += await self._drain(lambda conn: ids_before(conn, cutoff), stopping)
            await self.store.write(lambda conn: self._prune_names(conn, cutoff))
        if self.max_bytes:
            deleted += await self._drain(lambda conn: oldest_ids(conn, self._excess_spans(conn)), stopping)
        if deleted:
            await self.store.write(release)
        self.deleted += deleted
        self.runs += 1
        return deleted

    def _prune_names(self, conn: apsw.Connection, cutoff: int) -> None:
        if prune_names(conn, cutoff):
            self.store.consumer.forget_names()  # a pruned name seen again must be written again

    def _excess_spans(self, conn: apsw.Connection) -> int:
        """About how many of the oldest spans must go to get under the cap (0 when under it)."""
        used = usage(conn).used_bytes
        if used <= self.max_bytes:
            return 0
        # an estimate from the id range (exact but for gaps), since count(*) scans the whole table
        spans = conn.execute("SELECT max(id) - min(id) + 1 FROM spans").fetchall()[0][0] or 0
        per_span = used / max(spans, 1)
        return min(BATCH_SPANS, max(1, int((used - self.max_bytes) / per_span) + 1))

    async def _drain(self, pick, stopping: asyncio.Event | None) -> int:
        deleted = 0
        while stopping is None or not stopping.is_set():
            batch = await self.store.write(lambda conn: delete_spans(conn, pick(conn)))
            if not batch:
                break
            deleted += batch
            await asyncio.sleep(0)  # let ingest's commits in between
        return deleted
