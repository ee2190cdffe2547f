"""annotationQuery's index: tag and annotation posting lists, partitioned by arrival so writes stay local.

A posting says "trace ``trace_low`` has, on a span of service S at time ``ts``, the tag key=value
(or the annotation)"; ``h`` is a 64-bit hash of (S, key, value) (``rows.tag_hash``). Clustered on
``h`` alone, the rows of one commit land on random pages all over the index, so every commit
rewrites about one 4 KiB page per span and ingest slows down as the database grows. Rows are
therefore clustered on ``(chunk, h)``, where a chunk is 8,192 consecutive span ids: a commit only
touches the pages of the newest chunk, whatever the database's size. Each request writes one row
per (chunk, h): the list of its postings (``postings``), packed by the ingest workers. ``tag_chunks``
keeps each chunk's time range, and a search merges the chunks that overlap its window, newest
first, opening a chunk only when it may hold something newer than what it has already found.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence
from itertools import groupby

import apsw

from tracebox.appliance.store.postings import CHUNK_BITS, Posting, decode, encode
from tracebox.appliance.store.rows import SPAN_COLUMNS, span_from_row, span_postings

CHUNK = 1 << CHUNK_BITS

DDL = """
CREATE TABLE tag_postings (
    chunk INTEGER NOT NULL,      -- (span id >> CHUNK_BITS) + 1 of the spans that brought the list
    h INTEGER NOT NULL,
    first_id INTEGER NOT NULL,   -- the first span id of the request that wrote it
    postings BLOB NOT NULL,      -- (ts, trace_low) pairs (see store.postings)
    PRIMARY KEY (chunk, h, first_id)
) WITHOUT ROWID;
"""

_INSERT = "INSERT INTO tag_postings (chunk, h, first_id, postings) VALUES (?,?,?,?)"
_WIDEN = (
    "INSERT INTO tag_chunks (chunk, min_ts, max_ts) VALUES (?,?,?) ON CONFLICT (chunk) DO UPDATE SET"
    " min_ts = min(min_ts, excluded.min_ts), max_ts = max(max_ts, excluded.max_ts)"
)
_LISTS = "SELECT first_id, postings FROM tag_postings WHERE chunk = ? AND h = ?"
_CHUNKS = "SELECT chunk, max_ts FROM tag_chunks WHERE max_ts >= ? AND min_ts <= ? ORDER BY max_ts DESC"


def chunk_of(span_id: int) -> int:
    return (span_id >> CHUNK_BITS) + 1


def first_id(last_id: int, spans: int) -> int:
    """The id of a request's first span: the next one, or, when its spans would straddle a chunk
    boundary, the first id of the next chunk, so each part of a request (``postings.pack``) lies in
    one chunk. Ids skip ahead by less than a request's size, at most once per chunk."""
    first = last_id + 1
    offset = first & (CHUNK - 1)
    if offset and offset + spans > CHUNK:
        first += CHUNK - offset
    return first


def insert(
    conn: apsw.Connection, tags: Sequence[tuple[int, int, bytes]], ranges: Iterable[tuple], first: int
) -> None:
    """Insert a request's posting lists and widen its chunks' time ranges; its spans got the ids
    from ``first`` on (``first_id``)."""
    base = chunk_of(first)
    conn.executemany(_INSERT, [(base + part, h, first, blob) for part, h, blob in tags])
    conn.executemany(_WIDEN, [(base + part, lo, hi) for part, lo, hi in ranges])


#: The spans ``delete_for`` takes: (id, then what ``rows.span_from_row`` reads).
STORED_SPANS = f"SELECT id, {SPAN_COLUMNS} FROM spans WHERE id IN "


def delete_for(conn: apsw.Connection, stored: Iterable[tuple]) -> None:
    """Remove the postings that stored spans (rows of ``STORED_SPANS``) brought, recomputed from
    each span as ingest computed them, from the lists of the span's chunk."""
    gone: dict[tuple[int, int], set[Posting]] = {}
    for row in stored:
        chunk = chunk_of(row[0])
        for h, ts, low in span_postings(span_from_row(*row[1:])):
            gone.setdefault((chunk, h), set()).add((ts, low))
    for (chunk, h), drop in gone.items():
        for first, blob in conn.execute(_LISTS, (chunk, h)).fetchall():
            postings = decode(blob)
            kept = [posting for posting in postings if posting not in drop]
            if len(kept) == len(postings):
                continue
            key = (chunk, h, first)
            if kept:
                conn.execute(
                    "UPDATE tag_postings SET postings = ? WHERE chunk = ? AND h = ? AND first_id = ?",
                    (encode(kept), *key),
                )
            else:
                conn.execute("DELETE FROM tag_postings WHERE chunk = ? AND h = ? AND first_id = ?", key)


def newest_first(conn: apsw.Connection, hashes: Sequence[int], lo: int, hi: int) -> Iterator[int]:
    """``trace_low`` of the postings with any of ``hashes`` between ``lo`` and ``hi``, newest first."""
    chunks = conn.execute(_CHUNKS, (lo, hi)).fetchall()
    heap: list[tuple[int, int, int, Iterator[Posting]]] = []
    opened = 0
    order = 0  # ties on ts pop in the order chunks were opened

    def advance(postings: Iterator[Posting]) -> None:
        nonlocal order
        posting = next(postings, None)
        if posting is not None:
            order += 1
            heapq.heappush(heap, (-posting[0], order, posting[1], postings))

    while True:
        while opened < len(chunks) and (not heap or chunks[opened][1] >= -heap[0][0]):
            advance(_in_chunk(conn, chunks[opened][0], hashes, lo, hi))
            opened += 1
        if not heap:
            return
        _ts, _order, low, postings = heapq.heappop(heap)
        yield low
        advance(postings)


def _in_chunk(
    conn: apsw.Connection, chunk: int, hashes: Sequence[int], lo: int, hi: int
) -> Iterator[Posting]:
    """A chunk's postings of any of ``hashes`` in the window, newest first: one statement per chunk,
    whatever the number of hashes (a search without serviceName has one per service)."""
    sql = f"SELECT postings FROM tag_postings WHERE chunk = ? AND h IN ({','.join('?' * len(hashes))})"
    found = [p for (blob,) in conn.execute(sql, (chunk, *hashes)) for p in decode(blob) if lo <= p[0] <= hi]
    found.sort(reverse=True)
    return iter(found)


# --- schema steps (shipped: never edit) ------------------------------------------------------------

_CHUNKED_DDL = """
CREATE TABLE tag_index (
    chunk INTEGER NOT NULL,
    h INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    trace_low INTEGER NOT NULL,
    PRIMARY KEY (chunk, h, ts, trace_low)
) WITHOUT ROWID;
CREATE TABLE tag_chunks (chunk INTEGER PRIMARY KEY, min_ts INTEGER NOT NULL, max_ts INTEGER NOT NULL);
"""


def migrate_from_span_tags(conn: apsw.Connection) -> None:
    """Step 4: move the rows of the former ``span_tags`` (clustered on h) into chunks."""
    conn.execute(_CHUNKED_DDL)
    conn.execute(
        "INSERT OR IGNORE INTO tag_index (chunk, h, ts, trace_low)"
        f" SELECT coalesce((SELECT min(s.id) FROM spans s WHERE s.trace_low = t.trace_low AND s.ts = t.ts)"
        f" >> {CHUNK_BITS}, 0) + 1, h, ts, trace_low FROM span_tags t"
    )
    conn.execute(
        "INSERT INTO tag_chunks (chunk, min_ts, max_ts) SELECT chunk, min(ts), max(ts) FROM tag_index GROUP BY chunk"
    )
    conn.execute("DROP TABLE span_tags")


def migrate_to_postings(conn: apsw.Connection) -> None:
    """Step 5: one row per posting (``tag_index``) becomes one list per chunk and hash."""
    conn.execute(DDL)
    rows = conn.execute(
        "SELECT chunk, h, ts, trace_low FROM tag_index ORDER BY chunk, h, ts DESC, trace_low DESC"
    )
    lists = (
        (chunk, h, (chunk - 1) << CHUNK_BITS, encode([(ts, low) for _, _, ts, low in group]))
        for (chunk, h), group in groupby(rows, key=lambda row: (row[0], row[1]))
    )
    conn.executemany(_INSERT, lists)
    conn.execute("DROP TABLE tag_index")
