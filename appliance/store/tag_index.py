"""annotationQuery's index: tag and annotation postings, partitioned by arrival so writes stay local.

A row says "trace ``trace_low`` has, on a span of service S at time ``ts``, the tag key=value (or
the annotation)"; ``h`` is a 64-bit hash of (S, key, value) (``rows.tag_hash``). Clustered on
``h`` alone, the rows of one commit land on random pages all over the index, so every commit
rewrites about one 4 KiB page per span and ingest slows down as the database grows. Rows are
therefore clustered on ``(chunk, h, ts)``, where a chunk is 8,192 consecutive span ids: a commit
only touches the pages of the newest chunk or two, whatever the database's size. ``tag_chunks``
keeps each chunk's time range, and a search merges the chunks that overlap its window, newest
first, opening a chunk only when it may hold something newer than what it has already found.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence

import apsw

from tracebox.appliance.store.rows import SPAN_COLUMNS, build_batch, span_from_row

CHUNK_BITS = 13

DDL = """
CREATE TABLE tag_index (
    chunk INTEGER NOT NULL,      -- (span id >> CHUNK_BITS) + 1 of the span that brought the row
    h INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    trace_low INTEGER NOT NULL,
    PRIMARY KEY (chunk, h, ts, trace_low)
) WITHOUT ROWID;
CREATE TABLE tag_chunks (chunk INTEGER PRIMARY KEY, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL);
"""

INSERT = "INSERT OR IGNORE INTO tag_index (chunk, h, ts, trace_low) VALUES (?,?,?,?)"
_WIDEN = (
    "INSERT INTO tag_chunks (chunk, min_ts, max_ts) VALUES (?,?,?) ON CONFLICT (chunk) DO UPDATE SET"
    " min_ts = min(min_ts, excluded.min_ts), max_ts = max(max_ts, excluded.max_ts)"
)
_DELETE = "DELETE FROM tag_index WHERE chunk = ? AND h = ? AND ts = ? AND trace_low = ?"
_CHUNKS = "SELECT chunk, max_ts FROM tag_chunks WHERE max_ts >= ? AND min_ts <= ? ORDER BY max_ts DESC"
_RANGE = (
    "SELECT ts, trace_low FROM tag_index WHERE chunk = ? AND h = ? AND ts BETWEEN ? AND ? ORDER BY ts DESC"
)


def chunk_of(span_id: int) -> int:
    return (span_id >> CHUNK_BITS) + 1


def migrate_from_span_tags(conn: apsw.Connection) -> None:
    """Schema step: move the rows of the former ``span_tags`` (clustered on h) into chunks."""
    conn.execute(DDL)
    conn.execute(
        "INSERT OR IGNORE INTO tag_index (chunk, h, ts, trace_low)"
        f" SELECT coalesce((SELECT min(s.id) FROM spans s WHERE s.trace_low = t.trace_low AND s.ts = t.ts)"
        f" >> {CHUNK_BITS}, 0) + 1, h, ts, trace_low FROM span_tags t"
    )
    conn.execute(
        "INSERT INTO tag_chunks (chunk, min_ts, max_ts) SELECT chunk, min(ts), max(ts) FROM tag_index GROUP BY chunk"
    )
    conn.execute("DROP TABLE span_tags")


def insert(conn: apsw.Connection, tags: Sequence[tuple[int, int, int, int]], first_id: int) -> None:
    """Insert a batch's tag rows, (index of the span in the batch, h, ts, trace_low) each; the
    batch's spans got the ids from ``first_id`` on."""
    rows = [(chunk_of(first_id + index), h, ts, low) for index, h, ts, low in tags]
    conn.executemany(INSERT, rows)
    ranges: dict[int, list[int]] = {}
    for chunk, _h, ts, _low in rows:
        bounds = ranges.get(chunk)
        if bounds is None:
            ranges[chunk] = [ts, ts]
        elif ts < bounds[0]:
            bounds[0] = ts
        elif ts > bounds[1]:
            bounds[1] = ts
    conn.executemany(_WIDEN, [(chunk, lo, hi) for chunk, (lo, hi) in ranges.items()])


#: The spans ``delete_for`` takes: (id, then what ``rows.span_from_row`` reads).
STORED_SPANS = f"SELECT id, {SPAN_COLUMNS} FROM spans WHERE id IN "


def delete_for(conn: apsw.Connection, stored: Iterable[tuple]) -> None:
    """Delete the rows that stored spans (rows of ``STORED_SPANS``) brought, recomputed as ingest
    computed them."""
    ordered = sorted(stored)
    tags = build_batch([span_from_row(*row[1:]) for row in ordered]).tags
    if tags:
        conn.executemany(_DELETE, [(chunk_of(ordered[i][0]), h, ts, low) for i, h, ts, low in tags])


def newest_first(conn: apsw.Connection, hashes: Sequence[int], lo: int, hi: int) -> Iterator[int]:
    """``trace_low`` of the rows with any of ``hashes`` between ``lo`` and ``hi``, newest first."""
    chunks = conn.execute(_CHUNKS, (lo, hi)).fetchall()
    heap: list[tuple[int, int, int, Iterator]] = []
    opened = 0
    order = 0  # ties on ts pop in the order ranges were opened

    def advance(rows: Iterator) -> None:
        nonlocal order
        row = next(rows, None)
        if row is not None:
            order += 1
            heapq.heappush(heap, (-row[0], order, row[1], rows))

    while True:
        while opened < len(chunks) and (not heap or chunks[opened][1] >= -heap[0][0]):
            chunk = chunks[opened][0]
            opened += 1
            for h in hashes:
                advance(iter(conn.execute(_RANGE, (chunk, h, lo, hi))))
        if not heap:
            return
        _ts, _order, low, rows = heapq.heappop(heap)
        yield low
        advance(rows)
