"""Running the engine inside ``tracebox serve``: committed spans in, alerts out, never in ingest's way.

The runner reads spans the store has committed, in commit order, after a cursor; the engine works
on them in a thread of its own; alert changes, the cursor and (every few seconds, and whenever
alerts change) the engine's snapshot are written in one transaction. After a restart the engine
resumes from its last snapshot and re-reads the spans after that snapshot's cursor; because it
works in event time, that replay reproduces exactly what it had computed, and any alert change in
it was saved with its snapshot, so nothing is lost and nothing is announced twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import apsw
import orjson

from tracebox.appliance.background import repeat
from tracebox.appliance.store import Store
from tracebox.appliance.store.rows import FLAG_ERROR
from tracebox.detectors import alert_store
from tracebox.detectors.alerts import AlertChange
from tracebox.detectors.config import EngineConfig
from tracebox.detectors.engine import Engine

log = logging.getLogger(__name__)

BATCH_SPANS = 5000
IDLE_SECONDS = 0.5
SNAPSHOT_EVERY_S = 10.0

_LLM_COLUMNS = (
    "provider",
    "request_model",
    "response_model",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "finish_reasons",
    "ttft_us",
    "conversation_id",
    "cost_usd",
    "cost_source",
    "price_version",
)
_READ = (
    "SELECT s.id, s.trace_id, s.span_id, s.parent_id, s.kind, s.name, s.service, s.remote_service, s.ts,"
    f" s.duration, s.flags, c.user_id, c.tenant_id, {', '.join('c.' + c for c in _LLM_COLUMNS)}"
    " FROM spans s LEFT JOIN llm_calls c ON c.span_id = s.id WHERE s.id > ? ORDER BY s.id LIMIT ?"
)

#: The engine's tables, by version (see ``appliance.store.schema.migrate``).
SCHEMA = [alert_store.DDL]

OnChanges = Callable[[list[AlertChange]], Awaitable[None]]


def read_after(conn: apsw.Connection, cursor: int, limit: int) -> list[tuple[int, dict, dict | None]]:
    """Committed spans after ``cursor`` with their LLM fields (as ``extract_llm`` gives them).

    Each span is rebuilt from the indexed columns with just what the engine reads (ids, names,
    kind, times, endpoints' services, the error mark, an LLM call's user and tenant), so the engine
    never parses span JSON: ingest and the engine share two cores.
    """
    rows = []
    for row in conn.execute(_READ, (cursor, limit)):
        row_id, trace_id, span_id, parent, kind, name, service, remote, ts, duration, flags, user, tenant = (
            row[:13]
        )
        span: dict[str, Any] = {"traceId": trace_id, "id": span_id}
        for key, value in (
            ("parentId", parent),
            ("kind", kind),
            ("name", name),
            ("timestamp", ts),
            ("duration", duration),
        ):
            if value is not None:
                span[key] = value
        if service:
            span["localEndpoint"] = {"serviceName": service}
        if remote:
            span["remoteEndpoint"] = {"serviceName": remote}
        tags = {"error": ""} if flags & FLAG_ERROR else {}
        llm = row[13:]
        fields = None
        if llm[0] is not None or llm[1] is not None or llm[2] is not None:
            fields = dict(zip(_LLM_COLUMNS, llm, strict=True))
            fields["finish_reasons"] = (
                orjson.loads(fields["finish_reasons"]) if fields["finish_reasons"] else []
            )
            if user:
                tags["user.id"] = user
            if tenant:
                tags["tenant.id"] = tenant
        if tags:
            span["tags"] = tags
        rows.append((row_id, span, fields))
    return rows


class EngineRunner:
    def __init__(self, store: Store, config: EngineConfig, on_changes: OnChanges | None = None) -> None:
        self.store = store
        self.config = config
        self.on_changes = on_changes
        self.engine = Engine(config)
        self.cursor = 0
        self._saved_at = 0.0
        self._saved_cursor = 0
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracebox-engine")
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self.errors = 0

    async def start(self) -> None:
        await self.store.ensure_schema("detectors", SCHEMA)
        state = await self.store.read(alert_store.load_state)
        if state is not None:
            cursor, snapshot = state
            try:
                self.engine = Engine.restore(self.config, snapshot)
                self.cursor = cursor
                self._saved_cursor = cursor
            except Exception as exc:  # a snapshot from another version or config: learn afresh
                log.warning("engine snapshot not usable (%s); starting from the newest spans", exc)
                self.cursor = self.store.consumer.last_id
        self._task = asyncio.create_task(self._run(), name="tracebox-engine")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        await self._save(force=True)
        self._thread.shutdown(wait=True)

    async def _run(self) -> None:
        await repeat(self.step, self._stopping, IDLE_SECONDS, "anomaly engine step", self._failed)

    def _failed(self) -> None:
        self.errors += 1

    async def step(self) -> bool:
        """Process the next batch of committed spans; False when there was none."""
        rows = await self.store.read(read_after, self.cursor, BATCH_SPANS)
        if not rows:
            if self._saved_cursor != self.cursor:  # idle: persist progress within SNAPSHOT_EVERY_S
                await self._save(force=False)  # (tail sampling deletes only what it has saved)
            return False
        batch = [(span, llm) for _, span, llm in rows]
        loop = asyncio.get_running_loop()
        changes = await loop.run_in_executor(self._thread, self.engine.process, batch)
        self.cursor = rows[-1][0]
        await self._save(force=bool(changes), changes=changes)
        if changes and self.on_changes is not None:
            await self.on_changes(changes)
        return True

    async def _save(self, force: bool, changes: list[AlertChange] = ()) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < SNAPSHOT_EVERY_S:
            return
        loop = asyncio.get_running_loop()
        snapshot = await loop.run_in_executor(self._thread, self.engine.snapshot)
        cursor = self.cursor
        await self.store.write(lambda conn: alert_store.commit_progress(conn, cursor, snapshot, changes))
        self._saved_at = now
        self._saved_cursor = cursor

    async def status(self) -> dict[str, Any]:
        """Progress as ``/api/tracebox/engine`` shows it; read in the engine's thread, between batches."""
        loop = asyncio.get_running_loop()
        status = await loop.run_in_executor(self._thread, self.engine.status)
        status["lagSpans"] = max(0, self.store.consumer.last_id - self.cursor)
        status["cursor"] = self.cursor
        status["errors"] = self.errors
        return status

    async def baselines(self) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.engine.baselines)
