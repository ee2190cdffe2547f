"""Running the engine inside ``tracebox serve``: committed spans in, alerts out, never in ingest's way.

The runner reads spans the store has committed, in commit order, after a cursor; the engine works
on them in a process of its own (reading the spans there too, through its own read connection), so
its Python work runs on another core than ingest's instead of taking turns with it for the GIL, and
its objects never slow the server's garbage collector. Alert changes, the cursor and (every few seconds, and whenever
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
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

import apsw
import orjson

from tracebox.appliance.background import repeat
from tracebox.appliance.store import Store
from tracebox.appliance.store.rows import FLAG_ERROR
from tracebox.appliance.workers import read_connection, worker_pool
from tracebox.detectors import alert_store
from tracebox.detectors.accumulators import llm_input
from tracebox.detectors.alerts import AlertChange
from tracebox.detectors.config import EngineConfig
from tracebox.detectors.engine import Engine, SpanRecord

log = logging.getLogger(__name__)

#: Spans per step: large enough that a step's round trip is noise, small enough that a step's rows
#: do not scatter the process's heap (5,000 -> 2,000: the engine's peak RSS at 300k OTLP spans
#: 121-127 -> 115 MB, with the rollup's smaller calls).
BATCH_SPANS = 2000
IDLE_SECONDS = 0.5
SNAPSHOT_EVERY_S = 10.0

_READ_SPANS = (
    "SELECT id, trace_id, span_id, parent_id, kind, name, service, remote_service, ts, duration,"
    f" flags & {FLAG_ERROR}, NULL FROM spans WHERE id > ? ORDER BY id LIMIT ?"
)
_READ_CALLS = (
    "SELECT span_id, request_model, response_model, input_tokens, cost_usd, finish_reasons, user_id,"
    " tenant_id FROM llm_calls WHERE span_id > ? AND span_id <= ?"
)

#: The engine's tables, by version (see ``appliance.store.schema.migrate``).
SCHEMA = [alert_store.DDL]

T = TypeVar("T")


class EngineUnavailable(RuntimeError):
    """The engine's process could not start (the log says why); alerts are off."""


OnChanges = Callable[[list[AlertChange]], Awaitable[None]]


def read_after(conn: apsw.Connection, cursor: int, limit: int) -> list[SpanRecord]:
    """Committed spans after ``cursor``, as the engine reads them.

    The rows of the store's own columns are the engine's records as they come (with the LLM call
    filled in for the spans that have one), so the engine never parses span JSON nor builds a
    dict per span: ingest and the engine share two cores.
    """
    records = conn.execute(_READ_SPANS, (cursor, limit)).fetchall()
    if not records:
        return records
    calls = {row[0]: row[1:] for row in conn.execute(_READ_CALLS, (cursor, records[-1][0]))}
    if calls:
        for at, record in enumerate(records):
            call = calls.get(record[0])
            if call is not None:
                request, response, tokens, cost, reasons, user, tenant = call
                reasons = orjson.loads(reasons) if reasons else ()
                records[at] = (
                    *record[:-1],
                    llm_input(request, response, tokens, cost, reasons, user, tenant),
                )
    return records


class EngineRunner:
    def __init__(self, store: Store, config: EngineConfig, on_changes: OnChanges | None = None) -> None:
        self.store = store
        self.config = config
        self.on_changes = on_changes
        self.cursor = 0
        self._saved_at = 0.0
        self._saved_cursor = 0
        self._process: ProcessPoolExecutor | None = None
        self._ready = asyncio.Event()  # set once the engine's process has its state, or failed to
        self.failure: str | None = None  # why the engine could not start
        self._task: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self.errors = 0

    async def start(self, when_ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """Start in the background (the server is healthy before the engine's process is up);
        ``when_ready`` runs once it is."""
        await self.store.ensure_schema("detectors", SCHEMA)
        self._task = asyncio.create_task(self._run(when_ready), name="tracebox-engine")

    async def _boot(self) -> None:
        """Start the engine's process from the last saved snapshot (or fresh) and set the cursor."""
        if self._process is not None:  # a dead one
            self._process.shutdown(wait=False)
        self._process = worker_pool(1, background=True)
        state = await self.store.read(alert_store.load_state)
        cursor, snapshot = state if state is not None else (0, None)
        problem = await self._in_engine(_boot, str(self.store.path), self.config, snapshot, booting=True)
        if problem:  # a snapshot from another version or config: learn afresh
            log.warning("engine snapshot not usable (%s); starting from the newest spans", problem)
            cursor = self.store.consumer.last_id
        self.cursor = self._saved_cursor = cursor
        self._ready.set()

    async def _in_engine(self, fn: Callable[..., T], *args: Any, booting: bool = False) -> T:
        if not booting:
            await self._ready.wait()
            if self.failure is not None:
                raise EngineUnavailable(self.failure)
        assert self._process is not None
        return await asyncio.get_running_loop().run_in_executor(self._process, fn, *args)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            await self._task
        if self._ready.is_set() and self.failure is None:
            await self._save(force=True)
        if self._process is not None:
            self._process.shutdown(wait=True)

    async def _run(self, when_ready: Callable[[], Awaitable[None]] | None) -> None:
        try:
            await self._boot()
        except Exception as exc:
            log.exception("the anomaly engine could not start; alerts are off until a restart")
            self.errors += 1
            self.failure = f"the anomaly engine could not start: {exc}; see the tracebox log"
            self._ready.set()  # callers stop waiting and learn why
            return
        if when_ready is not None:
            await when_ready()
        await repeat(self.step, self._stopping, IDLE_SECONDS, "anomaly engine step", self._failed)

    def _failed(self) -> None:
        self.errors += 1

    async def step(self) -> bool:
        """Process the next batch of committed spans; False when there was none."""
        try:
            last, changes = await self._in_engine(_step, self.cursor, BATCH_SPANS)
        except BrokenProcessPool:
            # the process died (killed, out of memory): resume from the last save, which replays
            # the spans after it exactly as before (event time), so no alert is lost or repeated
            log.error("the anomaly engine's process died; restarting it from its last snapshot")
            self._ready.clear()
            await self._boot()
            return True
        if last is None:
            if self._saved_cursor != self.cursor:  # idle: persist progress within SNAPSHOT_EVERY_S
                await self._save(force=False)  # (tail sampling deletes only what it has saved)
            return False
        self.cursor = last
        await self._save(force=bool(changes), changes=changes)
        if changes and self.on_changes is not None:
            await self.on_changes(changes)
        return True

    async def _save(self, force: bool, changes: list[AlertChange] = ()) -> None:
        now = time.monotonic()
        if not force and now - self._saved_at < SNAPSHOT_EVERY_S:
            return
        snapshot = await self._in_engine(_call, "snapshot")
        cursor = self.cursor
        await self.store.write(lambda conn: alert_store.commit_progress(conn, cursor, snapshot, changes))
        self._saved_at = now
        self._saved_cursor = cursor

    async def status(self) -> dict[str, Any]:
        """Progress as ``/api/tracebox/engine`` shows it; read in the engine's process, between batches."""
        try:
            status = await self._in_engine(_call, "status")
        except EngineUnavailable as exc:
            status = {"state": "failed", "error": str(exc)}
        status["lagSpans"] = max(0, self.store.consumer.last_id - self.cursor)
        status["cursor"] = self.cursor
        status["errors"] = self.errors
        return status

    async def run_beside(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the engine's process, between engine steps (the insights rollup
        analyses traces there, off the server's interpreter lock)."""
        return await self._in_engine(fn, *args)

    async def baselines(self) -> list[dict[str, Any]]:
        return [] if self.failure else await self._in_engine(_call, "baselines")

    async def open_alerts(self) -> list[dict[str, Any]]:
        return [] if self.failure else await self._in_engine(_call, "open_alerts")


# --- inside the engine's process ------------------------------------------------------------------

_engine: Engine | None = None
_path = ""


def _boot(path: str, config: EngineConfig, snapshot: bytes | None) -> str | None:
    """Set up this process's engine; returns why the snapshot was not usable, if it was not."""
    global _engine, _path
    _path = path
    _engine = Engine(config)
    if snapshot is None:
        return None
    try:
        _engine = Engine.restore(config, snapshot)
    except Exception as exc:
        return str(exc) or type(exc).__name__
    return None


def _step(cursor: int, limit: int) -> tuple[int | None, list[AlertChange]]:
    """Read and process the spans after ``cursor``: (the last one's id or None, alert changes)."""
    assert _engine is not None, "engine process not booted"
    records = read_after(read_connection(_path), cursor, limit)
    if not records:
        return None, []
    return records[-1][0], _engine.process(records)


def _call(method: str) -> Any:
    assert _engine is not None, "engine process not booted"
    return getattr(_engine, method)()
