"""annotationQuery over the chunked tag index: across many chunks, with late spans, with requests
larger than a chunk, and on databases written by the former layouts (``span_tags``, then one row
per posting in ``tag_index``), migrated on start."""

from __future__ import annotations

import random

import apsw

from tests.conftest import start_tracebox
from tests.spans import NOW_US, dumps, new_trace_id, span, tag_postings
from tracebox.appliance.demo import generate_traces
from tracebox.appliance.store import tag_index
from tracebox.appliance.store.postings import decode
from tracebox.appliance.store.rows import build_batch, span_postings, tag_hash, trace_low
from tracebox.appliance.store.schema import MIGRATIONS, migrate

SECOND = 1_000_000
CHUNK = 1 << tag_index.CHUNK_BITS


def _search(server, **params):
    params.setdefault("endTs", NOW_US // 1000 + 1000)
    params.setdefault("lookback", 86_400_000)
    return server.get_json("/api/v2/traces", **params)


def test_newest_traces_first_across_chunks_with_late_spans(fresh_tracebox):
    """Three chunks' worth of spans; late ones (old timestamps) arrive last, in the newest chunk,
    and some early ones carry the newest timestamps: the search must still answer newest first."""
    rng = random.Random(7)
    traces = []  # (trace id, ts, colour)
    for i in range(3 * CHUNK):
        ts = NOW_US - (3 * CHUNK - i) * SECOND // 10  # arrival roughly follows time...
        colour = "red" if i % 5 == 0 else "blue"
        if i % 997 == 0:  # ...except for stragglers, red, off the 0.1 s grid (no ties in the order):
            if (i // 997) % 2:  # late ones with old timestamps
                ts = NOW_US - rng.randrange(1, 3 * CHUNK) * SECOND // 10 - 1 - i
            else:  # early ones with the newest timestamps of all, stored in the oldest chunks
                ts = NOW_US + 1 + i
            colour = "red"
        traces.append((new_trace_id(), ts, colour))
    for start in range(0, len(traces), 2000):
        body = [
            span(trace_id, "1", service="chunky", ts=ts, tags={"colour": colour})
            for trace_id, ts, colour in traces[start : start + 2000]
        ]
        assert fresh_tracebox.post("/api/v2/spans", dumps(body)).status_code == 202

    red = sorted(((ts, t) for t, ts, c in traces if c == "red"), reverse=True)
    for limit in (1, 10, 300):
        got = _search(fresh_tracebox, serviceName="chunky", annotationQuery="colour=red", limit=limit)
        assert [t[0]["traceId"] for t in got] == [t for _, t in red[:limit]]
    # without serviceName the merge runs over every service's rows
    got = _search(fresh_tracebox, annotationQuery="colour=red", limit=25)
    assert [t[0]["traceId"] for t in got] == [t for _, t in red[:25]]

    conn = apsw.Connection(str(fresh_tracebox.db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        chunks = conn.execute("SELECT count(*) FROM tag_chunks").fetchall()[0][0]
    finally:
        conn.close()
    assert chunks >= 3


def test_a_database_of_the_former_layout_is_migrated(tmp_path):
    """Rows of ``span_tags`` (clustered on the hash alone) move into chunks; searches still find them."""
    db = tmp_path / "old.db"
    conn = apsw.Connection(str(db))
    migrate(conn, MIGRATIONS[:3])  # the schema before the tag index was chunked
    trace_id = new_trace_id()
    with conn:
        conn.execute(
            "INSERT INTO spans (trace_low, trace_id, span_id, name, service, ts, duration, json)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                trace_low(trace_id),
                trace_id,
                "0000000000000001",
                "get",
                "legacy",
                NOW_US,
                1000,
                dumps(span(trace_id, "1", service="legacy", tags={"colour": "green"})),
            ),
        )
        conn.execute("INSERT INTO service_names VALUES ('legacy', ?)", (NOW_US,))
        conn.execute(
            "INSERT INTO span_tags VALUES (?, ?, ?)",
            (tag_hash("legacy", "colour", "green"), NOW_US, trace_low(trace_id)),
        )
    conn.close()

    server = start_tracebox(db)
    try:
        got = _search(server, serviceName="legacy", annotationQuery="colour=green")
        assert [t[0]["traceId"] for t in got] == [trace_id]
        assert _search(server, serviceName="legacy", annotationQuery="colour=blue") == []
    finally:
        server.stop()
    conn = apsw.Connection(str(db))
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert not {"span_tags", "tag_index"} & names and {"tag_postings", "tag_chunks"} <= names
        h = tag_hash("legacy", "colour", "green")
        assert tag_postings(conn) == [(tag_index.chunk_of(1), h, NOW_US, trace_low(trace_id))]
    finally:
        conn.close()


def test_a_request_larger_than_a_chunk_keeps_each_posting_in_its_spans_chunk(fresh_tracebox):
    """One request of 1.2 chunks, after a small one: ids skip to a chunk boundary so each part of the
    request lies in one chunk, every posting sits in the chunk of the span that brought it, and a
    search and a retention-style delete both find them there."""
    small = [span(new_trace_id(), "1", service="big", tags={"size": "small"})]
    assert fresh_tracebox.post("/api/v2/spans", dumps(small)).status_code == 202
    count = CHUNK + CHUNK // 5
    traces = [new_trace_id() for _ in range(count)]
    body = [
        span(t, "1", service="big", ts=NOW_US - (count - i) * 1000, tags={"size": "large", "n": str(i % 7)})
        for i, t in enumerate(traces)
    ]
    assert fresh_tracebox.post("/api/v2/spans", dumps(body)).status_code == 202

    got = _search(fresh_tracebox, serviceName="big", annotationQuery="n=3", limit=1000)
    expected = [t for i, t in enumerate(traces) if i % 7 == 3][::-1]
    assert [t[0]["traceId"] for t in got] == expected[:1000]

    conn = apsw.Connection(str(fresh_tracebox.db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        ids = dict(conn.execute("SELECT trace_low, id FROM spans WHERE service = 'big'").fetchall())
        postings = tag_postings(conn)
    finally:
        conn.close()
    first_large = ids[trace_low(traces[0])]
    assert first_large % CHUNK == 0  # the large request starts a chunk
    assert len(postings) == 2 * count + 1  # size and n per large trace, size for the small one
    assert all(chunk == tag_index.chunk_of(ids[low]) for chunk, _h, _ts, low in postings)


def test_a_database_with_one_row_per_posting_is_migrated(tmp_path):
    """The step-4 layout (``tag_index``: a row per posting) becomes lists per chunk and hash."""
    db = tmp_path / "v4.db"
    conn = apsw.Connection(str(db))
    migrate(conn, MIGRATIONS[:4])
    trace_ids = [new_trace_id() for _ in range(3)]
    h = tag_hash("legacy", "colour", "green")
    rows = []
    with conn:
        for i, trace_id in enumerate(trace_ids):
            span_id = 1 + i * CHUNK // 2  # the first two share chunk 1, the third is in chunk 2
            conn.execute(
                "INSERT INTO spans (id, trace_low, trace_id, span_id, name, service, ts, duration, json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    span_id,
                    trace_low(trace_id),
                    trace_id,
                    f"{i + 1:016x}",
                    "get",
                    "legacy",
                    NOW_US + i,
                    1000,
                    dumps(span(trace_id, "1", service="legacy", tags={"colour": "green"})),
                ),
            )
            rows.append((tag_index.chunk_of(span_id), h, NOW_US + i, trace_low(trace_id)))
        conn.executemany("INSERT INTO tag_index VALUES (?, ?, ?, ?)", rows)
        conn.execute(
            "INSERT INTO tag_chunks VALUES (1, ?, ?), (2, ?, ?)", (NOW_US, NOW_US + 1, NOW_US + 2, NOW_US + 2)
        )
        conn.execute("INSERT INTO service_names VALUES ('legacy', ?)", (NOW_US + 2,))
    conn.close()

    server = start_tracebox(db)
    try:
        got = _search(server, serviceName="legacy", annotationQuery="colour=green")
        assert [t[0]["traceId"] for t in got] == trace_ids[::-1]
    finally:
        server.stop()
    conn = apsw.Connection(str(db))
    try:
        assert sorted(tag_postings(conn)) == sorted(rows)
        assert conn.execute("SELECT chunk, count(*) FROM tag_postings GROUP BY chunk").fetchall() == [
            (1, 1),
            (2, 1),
        ]
    finally:
        conn.close()


def test_packed_lists_hold_each_traces_first_posting_per_tag():
    """``build_batch`` packs, per tag hash, one posting per trace: the timestamp of the first span
    of the request that carried the tag (what ``span_postings`` recomputes when spans are deleted)."""
    spans = [dict(s) for trace in generate_traces(40, seed=3, end_us=NOW_US) for s in trace]
    expected: dict[int, dict[int, int]] = {}
    for s in spans:
        for h, ts, low in span_postings(s):
            expected.setdefault(h, {}).setdefault(low, ts)
    batch = build_batch([dict(s) for s in spans])
    assert {part for part, _, _ in batch.tags} == {0}
    got = {h: {low: ts for ts, low in decode(blob)} for _, h, blob in batch.tags}
    assert got == expected
    assert len(batch.tags) == len(expected)  # one list per hash, in key order for the writer
    assert [h for _, h, _ in batch.tags] == sorted(expected)


def test_spans_without_terms_pack_no_lists():
    """Spans with no tag or annotation bring no posting list, and a request of only such spans no
    time range; beside a span that brings a list, the range holds both."""
    plain = span(new_trace_id(), "1")
    alone = build_batch([dict(plain)])
    assert (alone.tags, alone.tag_ranges) == ([], [])
    tagged = span(new_trace_id(), "2", ts=NOW_US + 5, tags={"k": "v"})
    batch = build_batch([dict(plain), dict(tagged)])
    assert [(part, h, decode(blob)) for part, h, blob in batch.tags] == [
        (0, tag_hash("frontend", "k", "v"), [(NOW_US + 5, trace_low(tagged["traceId"]))])
    ]
    assert batch.tag_ranges == [(0, NOW_US, NOW_US + 5)]
