"""Pre-aggregated dependency links: per-minute buckets linked in the background, summed at query time.

A trace belongs to the 1-minute bucket of its earliest span (by timestamp). The writer records
which buckets each batch touched (``mark_dirty``, inside the insert job); ``link_buckets`` links
every trace starting in a dirty bucket once it has been quiet a while and stores the bucket's
links with the span id it saw (``linked_id``), the earliest start of any trace touching the bucket
(``first_ts``) and the latest span of the traces starting in it (``max_ts``). A late span of a
linked trace re-dirties the bucket that counted it.

``window_links`` answers ``/dependencies`` exactly as linking every span of the window would:
it sums the buckets wholly inside the window (their traces' spans all in it, none touched since),
and links live the rest of the window (edges, dirty buckets) trace by trace, skipping traces a
summed bucket already counted and dropping any summed bucket found stale.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import apsw

from tracebox.appliance.linker import DependencyLinker, Link, merge_links
from tracebox.appliance.store.queries import link_span
from tracebox.appliance.store.slots import OLDEST_TS, time_window

BUCKET_US = 60_000_000
#: SQLite's largest integer: bucket arithmetic near a hostile timestamp (2^63 - 1 is a valid one)
#: must not step past it.
_INT64_MAX = 2**63 - 1

DDL = """
CREATE TABLE dependency_dirty (
    bucket INTEGER PRIMARY KEY,     -- ts // BUCKET_US
    first_id INTEGER NOT NULL,      -- spans with id >= this in the bucket are newer than its links
    last_id INTEGER NOT NULL,       -- the newest span id that touched it
    touched_us INTEGER NOT NULL     -- wall clock of the last touch (the quiet period runs from it)
);
CREATE TABLE dependency_buckets (
    bucket INTEGER PRIMARY KEY,
    linked_id INTEGER NOT NULL,     -- spans up to this id were seen by the links
    first_ts INTEGER,               -- earliest start of the traces with a span in the bucket
    max_ts INTEGER                  -- latest span of the traces starting in the bucket
);
CREATE TABLE dependency_links (
    bucket INTEGER NOT NULL,
    parent TEXT NOT NULL,
    child TEXT NOT NULL,
    calls INTEGER NOT NULL,
    errors INTEGER NOT NULL,
    PRIMARY KEY (bucket, parent, child)
) WITHOUT ROWID;
"""

_BUCKET_SQL = "CASE WHEN ts >= 0 THEN ts / 60000000 ELSE (ts + 1) / 60000000 - 1 END"

MARK_DIRTY = (
    "INSERT INTO dependency_dirty (bucket, first_id, last_id, touched_us) VALUES (?,?,?,?)"
    " ON CONFLICT (bucket) DO UPDATE SET first_id = min(first_id, excluded.first_id),"
    " last_id = max(last_id, excluded.last_id), touched_us = max(touched_us, excluded.touched_us)"
)


def create_tables(conn: apsw.Connection) -> None:
    """The core migration: the tables, with every bucket already holding spans marked dirty."""
    conn.execute(DDL)
    conn.execute(
        f"INSERT INTO dependency_dirty (bucket, first_id, last_id, touched_us)"
        f" SELECT DISTINCT {_BUCKET_SQL}, 0, (SELECT coalesce(max(id), 0) FROM spans), 0"
        f" FROM spans WHERE ts IS NOT NULL"
    )


def mark_dirty(conn: apsw.Connection, spans: list[tuple], first_id: int, last_id: int) -> None:
    """Writer thread, in the insert job: the buckets this batch's span rows (ts at index 8) touched."""
    buckets = {row[8] // BUCKET_US for row in spans if row[8] is not None}
    if buckets:
        now = time.time_ns() // 1000
        conn.executemany(MARK_DIRTY, [(b, first_id, last_id, now) for b in buckets])


# -- reading spans ------------------------------------------------------------------------------

_COLUMNS = "id, trace_low, ts, span_id, parent_id, kind, service, remote_service, flags"


class _Trace:
    __slots__ = ("low", "rows")

    def __init__(self, low: int) -> None:
        self.low = low
        self.rows: list[tuple] = []  # (id, ts, span)

    @property
    def min_ts(self) -> int:
        return min(r[1] for r in self.rows)

    @property
    def max_ts(self) -> int:
        return max(r[1] for r in self.rows)

    @property
    def max_id(self) -> int:
        return max(r[0] for r in self.rows)


def _group(rows: Iterable[tuple]) -> dict[int, _Trace]:
    traces: dict[int, _Trace] = {}
    for span_id_, low, ts, span_id, parent_id, kind, service, remote, flags in rows:
        trace = traces.get(low)
        if trace is None:
            trace = traces[low] = _Trace(low)
        trace.rows.append((span_id_, ts, link_span(span_id, parent_id, kind, service, remote, flags)))
    return traces


def _traces_in(conn: apsw.Connection, ranges: list[tuple[int, int]], extra_lows: Iterable[int] = ()) -> dict:
    """Every timestamped span of each trace with a span in one of the inclusive ts ``ranges``."""
    lows: set[int] = set(extra_lows)
    for lo, hi in ranges:
        window, args = time_window(lo, hi)
        lows.update(r[0] for r in conn.execute(f"SELECT trace_low FROM spans WHERE {window}", args))
    rows: list[tuple] = []
    sql = f"SELECT {_COLUMNS} FROM spans WHERE trace_low = ? AND ts IS NOT NULL ORDER BY id"
    for low in sorted(lows):
        rows.extend(conn.execute(sql, (low,)))
    return _group(rows)


def _bucket(ts: int) -> int:
    return ts // BUCKET_US


def _bucket_range(bucket: int) -> tuple[int, int]:
    """A bucket's inclusive timestamp bounds, within SQLite's integers."""
    start = bucket * BUCKET_US
    return start, min(start + BUCKET_US - 1, _INT64_MAX)


# -- the background linker --------------------------------------------------------------------


def due_buckets(conn: apsw.Connection, quiet_us: int, limit: int) -> list[int]:
    cutoff = time.time_ns() // 1000 - quiet_us
    sql = "SELECT bucket FROM dependency_dirty WHERE touched_us <= ? ORDER BY bucket LIMIT ?"
    return [r[0] for r in conn.execute(sql, (cutoff, limit))]


def backlog(conn: apsw.Connection) -> int:
    return conn.execute("SELECT count(*) FROM dependency_dirty").fetchall()[0][0]


def link_buckets(conn: apsw.Connection, buckets: list[int]) -> tuple[int, list[tuple], set[int]]:
    """Read side of one round (one snapshot): (snapshot's last span id, per-bucket results,
    other buckets whose links count an older version of a trace seen here)."""
    with conn:  # one read transaction: the spans and the bucket rows agree
        seen = conn.execute("SELECT coalesce(max(id), 0) FROM spans").fetchall()[0][0]
        linked = dict(conn.execute("SELECT bucket, linked_id FROM dependency_buckets"))
        results = []
        stale: set[int] = set()
        for bucket in buckets:
            traces = _traces_in(conn, [_bucket_range(bucket)])
            linker = DependencyLinker()
            first_ts = max_ts = None
            for trace in traces.values():
                min_ts = trace.min_ts
                first_ts = min_ts if first_ts is None else min(first_ts, min_ts)
                if _bucket(min_ts) == bucket:
                    linker.put_trace([r[2] for r in trace.rows])
                    max_ts = trace.max_ts if max_ts is None else max(max_ts, trace.max_ts)
                newest = trace.max_id
                for other in {_bucket(r[1]) for r in trace.rows}:
                    if other != bucket and other in linked and linked[other] < newest:
                        stale.add(other)
            results.append((bucket, bool(traces), first_ts, max_ts, linker.links()))
    return seen, results, stale - set(buckets)


def store_buckets(conn: apsw.Connection, seen: int, results: list[tuple], stale: set[int]) -> None:
    """Write side of a round (writer thread): replace the buckets' links, clear their dirty marks
    unless a newer span touched them meanwhile, and re-dirty the stale buckets."""
    for bucket, has_spans, first_ts, max_ts, links in results:
        conn.execute("DELETE FROM dependency_links WHERE bucket = ?", (bucket,))
        if has_spans:
            conn.executemany(
                "INSERT INTO dependency_links VALUES (?,?,?,?,?)",
                [
                    (bucket, lk["parent"], lk["child"], lk["callCount"], lk.get("errorCount", 0))
                    for lk in links
                ],
            )
            conn.execute(
                "INSERT OR REPLACE INTO dependency_buckets VALUES (?,?,?,?)", (bucket, seen, first_ts, max_ts)
            )
        else:
            conn.execute("DELETE FROM dependency_buckets WHERE bucket = ?", (bucket,))
        conn.execute("DELETE FROM dependency_dirty WHERE bucket = ? AND last_id <= ?", (bucket, seen))
        conn.execute(
            "UPDATE dependency_dirty SET first_id = max(first_id, ?) WHERE bucket = ?", (seen + 1, bucket)
        )
    if stale:
        conn.executemany(MARK_DIRTY, [(b, seen + 1, seen, 0) for b in sorted(stale)])


def prune(conn: apsw.Connection) -> int:
    """After retention (writer thread): buckets older than the oldest span go; buckets whose traces
    lost spans (a trace touching them started before the oldest span) are linked again."""
    oldest = conn.execute(OLDEST_TS).fetchall()[0][0]
    if oldest is None:
        for table in ("dependency_links", "dependency_buckets", "dependency_dirty"):
            conn.execute(f"DELETE FROM {table}")
        return conn.changes()
    first = _bucket(oldest)
    conn.execute("DELETE FROM dependency_links WHERE bucket < ?", (first,))
    conn.execute("DELETE FROM dependency_buckets WHERE bucket < ?", (first,))
    conn.execute("DELETE FROM dependency_dirty WHERE bucket < ?", (first,))
    stale = [
        r[0] for r in conn.execute("SELECT bucket FROM dependency_buckets WHERE first_ts < ?", (oldest,))
    ]
    if stale:
        conn.executemany(MARK_DIRTY, [(b, 0, 0, 0) for b in stale])
    return len(stale)


# -- the query ----------------------------------------------------------------------------------

#: After this many rounds of finding stale buckets, the whole window is linked live.
MAX_ROUNDS = 4


def window_links(conn: apsw.Connection, lo_us: int, hi_us: int) -> list[Link]:
    """``/dependencies`` over the inclusive window, equal to linking every trace's spans in it."""
    with conn:  # one snapshot for spans and the aggregates
        oldest = conn.execute(OLDEST_TS).fetchall()[0][0]
        if oldest is None:
            return []
        floor = max(lo_us, oldest)
        done = {
            bucket: linked_id
            for bucket, linked_id in conn.execute(
                "SELECT bucket, linked_id FROM dependency_buckets b WHERE bucket BETWEEN ? AND ?"
                " AND bucket * 60000000 >= ? AND first_ts >= ? AND coalesce(max_ts, 0) <= ?"
                " AND NOT EXISTS (SELECT 1 FROM dependency_dirty d WHERE d.bucket = b.bucket)",
                (_bucket(lo_us), _bucket(hi_us), lo_us, floor, hi_us),
            )
        }
        # traces with newer spans in dirty buckets outside the window may make a summed bucket stale
        outside_lows: set[int] = set()
        for bucket, first_id in conn.execute(
            "SELECT bucket, first_id FROM dependency_dirty WHERE bucket < ? OR bucket > ?",
            (_bucket(lo_us), _bucket(hi_us)),
        ):
            window, args = time_window(*_bucket_range(bucket))
            outside_lows.update(
                r[0]
                for r in conn.execute(
                    f"SELECT trace_low FROM spans WHERE {window} AND id >= ?", (*args, first_id)
                )
            )
        for _round in range(MAX_ROUNDS):
            live = _live(conn, lo_us, hi_us, done, outside_lows)
            if isinstance(live, list):
                break
            for bucket in live:
                done.pop(bucket, None)
        else:
            done = {}
            live = _live(conn, lo_us, hi_us, done, outside_lows)
            assert isinstance(live, list)
        summed = _summed(conn, sorted(done))
        return merge_links([summed, live])


def _summed(conn: apsw.Connection, buckets: list[int]) -> list[Link]:
    links: list[Link] = []
    sql = "SELECT parent, child, calls, errors FROM dependency_links WHERE bucket = ?"
    for bucket in buckets:
        for parent, child, calls, errors in conn.execute(sql, (bucket,)):
            links.append({"parent": parent, "child": child, "callCount": calls, "errorCount": errors})
    return links


def _live(
    conn: apsw.Connection, lo_us: int, hi_us: int, done: dict[int, int], outside_lows: set[int]
) -> list[Link] | set[int]:
    """Links of the traces not counted by a ``done`` bucket, or the done buckets found stale."""
    ranges: list[tuple[int, int]] = []
    cursor = lo_us
    for bucket in sorted(done):
        start = bucket * BUCKET_US
        if start > cursor:
            ranges.append((cursor, min(start - 1, hi_us)))
        cursor = max(cursor, start + BUCKET_US)
    if cursor <= hi_us:
        ranges.append((cursor, hi_us))
    ranges = [(lo, min(hi, _INT64_MAX)) for lo, hi in ranges if lo <= _INT64_MAX]
    traces = _traces_in(conn, ranges, outside_lows)
    linker = DependencyLinker()
    stale: set[int] = set()
    for trace in traces.values():
        newest = trace.max_id
        counted = False
        for bucket in {_bucket(r[1]) for r in trace.rows} & done.keys():
            version = [r for r in trace.rows if r[0] <= done[bucket]]
            if version and _bucket(min(r[1] for r in version)) == bucket:
                if newest <= done[bucket]:
                    counted = True
                else:
                    stale.add(bucket)  # it counted an older version of this trace
        if counted:
            continue
        spans = [r[2] for r in trace.rows if lo_us <= r[1] <= hi_us]
        if spans:
            linker.put_trace(spans)
    return stale if stale else linker.links()
