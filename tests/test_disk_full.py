"""A full disk: writes are refused with a clear error, reads go on, and writing resumes by itself.

SQLite's own limit stands in for the disk: ``max_page_count`` makes the database file full at a
size of our choosing, which is exactly the error (SQLITE_FULL) a full file system gives.
"""

from __future__ import annotations

import asyncio

import pytest

from tests.spans import new_trace_id, span
from tracebox.appliance.errors import StoreUnavailable
from tracebox.appliance.store import Store, queries


def batch(n: int) -> list[dict]:
    trace_id = new_trace_id()
    return [span(trace_id, f"{i + 1:x}", tags={"pad": "x" * 2000}) for i in range(n)]


def test_full_disk_refuses_writes_keeps_reads_and_recovers(tmp_path):
    async def scenario() -> None:
        store = Store(tmp_path / "t.db")
        store.writer.retry_unavailable_s = 0.2
        try:
            first = batch(10)
            await store.write_spans([dict(s) for s in first])
            pages = store.read_sync(lambda conn: conn.execute("PRAGMA page_count").fetchall()[0][0])
            store._write_conn.execute(f"PRAGMA max_page_count = {pages + 5}")  # the disk fills up
            with pytest.raises(StoreUnavailable, match="disk holding the database is full"):
                for _ in range(50):
                    await store.write_spans(batch(50))
            assert store.usable() is not None
            with pytest.raises(StoreUnavailable):  # refused at once while it stays full
                await store.write_spans(batch(1))
            # reads go on, and what was acknowledged is intact
            assert len(await store.read(queries.get_trace, first[0]["traceId"], True)) == 10
            store._write_conn.execute("PRAGMA max_page_count = 1073741823")  # space returns
            await asyncio.sleep(0.3)
            later = batch(5)
            await store.write_spans([dict(s) for s in later])
            assert store.usable() is None
            assert len(await store.read(queries.get_trace, later[0]["traceId"], True)) == 5
        finally:
            store.close()

    asyncio.run(scenario())
