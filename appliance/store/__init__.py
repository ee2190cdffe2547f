"""The SQLite store: one file, WAL, one writer thread, a pool of read connections.

The interface is deliberately narrow, after Zipkin's storage roles: ``write_spans`` (consumer),
``read`` with the functions of ``queries`` (span store, names, autocomplete, dependencies), and
``write`` for the other parts of tracebox that persist state (alerts, outbox, retention).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import apsw

from tracebox.appliance.model import Span
from tracebox.appliance.store import blobs
from tracebox.appliance.store.checkpoint import WRITER_BACKSTOP_PAGES, Checkpointer
from tracebox.appliance.store.consumer import SpanConsumer
from tracebox.appliance.store.rows import Batch, WireBatch, build_batch
from tracebox.appliance.store.schema import migrate
from tracebox.appliance.store.writer import Writer

T = TypeVar("T")

BUSY_TIMEOUT_MS = 10_000


#: Page cache per connection. The writer's holds the hot pages inserts touch: the right edges of the
#: time-ordered indexes and the newest tag chunk, a few MiB; the random leaves of the trace-id index
#: outgrow any cache and are read back from the OS page cache in microseconds. Since span JSON is
#: compressed (``blobs``) 8 MiB serves as well as 16 (``tracebox bench``: same throughput, the
#: server's peak RSS 123-134 -> 118 MB at 300k OTLP spans; 32 -> 16 had saved 19 MB before).
#: Readers keep 4 MiB: the insights rollup reads every new span's row once, which filled each
#: reader's cache with pages nothing reads again (server peak at 450k spans 130 -> 119 MB).
WRITER_CACHE_MIB = 8
READER_CACHE_MIB = 4


def connect(
    path: str | os.PathLike,
    *,
    synchronous: str = "NORMAL",
    readonly: bool = False,
    cache_mib: int = READER_CACHE_MIB,
) -> apsw.Connection:
    flags = apsw.SQLITE_OPEN_READONLY if readonly else apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    conn = apsw.Connection(str(path), flags=flags)
    conn.setbusytimeout(BUSY_TIMEOUT_MS)
    if not readonly:
        # Takes effect only while the file is empty (a new database): lets retention hand freed
        # pages back to the file system (see store.retention). A no-op on an existing file.
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
        conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute(f"PRAGMA cache_size = {-1024 * cache_mib}")
    conn.execute("PRAGMA temp_store = MEMORY")
    blobs.register(conn)
    return conn


def instance_secret(conn: apsw.Connection) -> str:
    """A random secret made once per database; it salts redaction hashes, so they stay stable."""
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('instance_secret', ?) ON CONFLICT (key) DO NOTHING",
        (secrets.token_hex(16),),
    )
    return conn.execute("SELECT value FROM meta WHERE key = 'instance_secret'").fetchall()[0][0]


class Store:
    def __init__(
        self,
        path: str | os.PathLike,
        *,
        fsync: bool = False,
        max_pending_spans: int = 200_000,
        readers: int = 2,
    ) -> None:
        self.path = Path(path)
        if self.path.parent and not self.path.parent.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # NORMAL in WAL mode survives a killed process (the WAL is in the OS); FULL survives power loss.
        self._synchronous = "FULL" if fsync else "NORMAL"
        self._write_conn = connect(self.path, synchronous=self._synchronous, cache_mib=WRITER_CACHE_MIB)
        self.schema_version = migrate(self._write_conn)
        self.consumer = SpanConsumer(self._write_conn)
        self.instance_secret = instance_secret(self._write_conn)
        self._write_conn.execute(f"PRAGMA wal_autocheckpoint = {WRITER_BACKSTOP_PAGES}")
        self._checkpointer = Checkpointer(
            lambda: connect(self.path, synchronous=self._synchronous, cache_mib=2)
        )
        self.writer = Writer(self._write_conn, max_pending_spans=max_pending_spans)
        self.writer.on_failure.append(self.consumer.forget_names)
        #: Rows for spans written with ``write_spans`` (made inside tracebox); the server sets its
        #: ingest pipeline's (``prepare.Preparer.rows``), so they are redacted, priced and indexed
        #: like received spans.
        self.prepare: Callable[[list[Span]], Batch] = build_batch
        self._local = threading.local()
        self._read_conns: list[apsw.Connection] = []
        self._readers = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="tracebox-reader")

    # -- writing -------------------------------------------------------------------------------

    async def write_spans(self, spans: list[Span]) -> int:
        """Store spans; returns once they are committed. Raises Overloaded / StoreUnavailable."""
        return await self.write_batch(self.prepare(spans))

    async def write_batch(self, batch: Batch | WireBatch) -> int:
        """Store prepared rows (``rows.build_batch``); returns the id of the last span once committed."""
        if not batch:
            return self.consumer.last_id
        return await self.write(lambda conn: self.consumer(conn, batch.read()), weight=len(batch))

    async def write(self, job: Callable[[apsw.Connection], T], weight: int = 0) -> T:
        """Run ``job`` in the writer thread inside the next group commit; wait for the commit."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()

        def done(result: Any, error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, future, result, error)

        self.writer.submit(job, done, weight)
        return await future

    # -- reading -------------------------------------------------------------------------------

    async def ensure_schema(self, component: str, steps: list) -> int:
        """Migrate another part's tables (see ``schema.migrate``) inside the writer's transaction."""
        return await self.write(lambda conn: migrate(conn, steps, component))

    async def read(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(conn, *args)`` on a pooled read connection, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._call, fn, args)

    def _call(self, fn: Callable[..., T], args: tuple) -> T:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = connect(self.path, synchronous=self._synchronous)
            self._read_conns.append(conn)
        return fn(conn, *args)

    def read_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """``read`` for code outside the event loop (CLI commands, tests)."""
        return self._readers.submit(self._call, fn, args).result()

    # -- state -------------------------------------------------------------------------------

    def usable(self) -> str | None:
        """None when healthy, else why the store cannot take writes."""
        return self.writer.unavailable

    def size_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                total += os.path.getsize(f"{self.path}{suffix}")
        return total

    def close(self) -> None:
        """Drain the writer (everything queued is committed), then close all connections."""
        self.writer.close()
        self._checkpointer.close()
        self._readers.shutdown(wait=True)
        for conn in self._read_conns:
            conn.close()
        self._write_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self._write_conn.close()


def _settle(future: asyncio.Future, result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
