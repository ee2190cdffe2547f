"""Stored span JSON is compressed with dictionaries trained on the database's own spans, and every
reader (the Zipkin API, the search's exact test, OTLP extras, LLM grouping) sees it unchanged."""

from __future__ import annotations

import asyncio
import time

import zstandard
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import format_trace_id

from tests.conftest import wait_until
from tests.spans import NOW_US, dumps, new_trace_id, span
from tracebox.appliance.prepare import Preparer, PrepareSettings
from tracebox.appliance.store import Store, blobs, connect, llm, queries
from tracebox.appliance.store.views import trace_otel


def _trace(trace_id: str, n: int, service: str = "checkout") -> list[dict]:
    """A root and ``n - 1`` children with the tags and annotations real spans carry."""
    root = span(trace_id, f"{1:016x}", service=service, name="post /cart", kind="SERVER",
                tags={"http.method": "POST", "http.route": "/cart", "trace.mark": trace_id},
                annotations=[(NOW_US + 5, "wr")])  # fmt: skip
    children = [
        span(trace_id, f"{i:016x}", parent=f"{1:016x}", service=service, name="select cart", kind="CLIENT",
             remote="postgres", ts=NOW_US + i, tags={"db.statement": f"SELECT * FROM cart WHERE id = {i}"})
        for i in range(2, n + 1)
    ]  # fmt: skip
    return [root, *children]


def _stored_blobs(db, trace_id: str) -> list[bytes]:
    conn = connect(db, readonly=True)
    try:
        return [bytes(b) for (b,) in conn.execute("SELECT json FROM spans WHERE trace_id = ?", (trace_id,))]
    finally:
        conn.close()


def _dictionaries(db) -> int:
    conn = connect(db, readonly=True)
    try:
        return conn.execute("SELECT count(*) FROM blob_dictionaries").fetchall()[0][0]
    finally:
        conn.close()


def _train_first_dictionary(server) -> None:
    """Store enough spans for the server's first dictionary, and wait until it is trained."""
    for _ in range(blobs.FIRST_TRAINING_SPANS // 500):
        assert server.post("/api/v2/spans", dumps(_trace(new_trace_id(), 500))).status_code == 202
    wait_until(lambda: _dictionaries(server.db) == 1, timeout=30)


def _by_id(spans: list[dict]) -> dict[str, dict]:
    return {s["id"]: s for s in spans}


def test_spans_stored_after_the_first_dictionary_are_compressed_and_read_back_unchanged(fresh_tracebox):
    server = fresh_tracebox
    plain_id = new_trace_id()
    plain = _trace(plain_id, 500)
    assert server.post("/api/v2/spans", dumps(plain)).status_code == 202
    _train_first_dictionary(server)
    plain_read = server.get_json(f"/api/v2/trace/{plain_id}")

    # the writer packs with the dictionary from its next batch on: post until a trace is packed
    deadline = time.monotonic() + 30
    while True:
        packed_id = new_trace_id(128)
        packed = _trace(packed_id, 50, service="payments")
        assert server.post("/api/v2/spans", dumps(packed)).status_code == 202
        stored = _stored_blobs(server.db, packed_id)
        if all(b.startswith(blobs.ZSTD_MAGIC) for b in stored):
            break
        assert time.monotonic() < deadline, "spans still stored plain 30 s after the dictionary"
    assert len(stored) == 50
    plain_stored = _stored_blobs(server.db, plain_id)
    assert all(b.startswith(b"{") for b in plain_stored)  # the older rows stay as they were
    assert sum(map(len, stored)) * 3 < sum(map(len, plain_stored[:50]))

    read = server.get_json(f"/api/v2/trace/{packed_id}")
    assert _by_id(read) == _by_id(packed)
    assert _by_id(server.get_json(f"/api/v2/trace/{plain_id}")) == _by_id(plain_read)
    # the search's exact test reads the packed spans: a tag and an annotation find the trace
    for query in (f"trace.mark={packed_id}", "wr and db.statement=SELECT * FROM cart WHERE id = 7"):
        found = server.get_json("/api/v2/traces", serviceName="payments", annotationQuery=query,
                                endTs=NOW_US // 1000 + 60_000, lookback=3_600_000, limit=1000)  # fmt: skip
        assert packed_id in {t[0]["traceId"] for t in found}, query


def test_otlp_extras_are_packed_and_restored(fresh_tracebox):
    server = fresh_tracebox
    _train_first_dictionary(server)

    provider = TracerProvider(resource=Resource.create({"service.name": "otel-packed"}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=server.otlp_http_url + "/v1/traces"))
    )
    tracer = provider.get_tracer("packed.scope")
    deadline = time.monotonic() + 30
    while True:
        with tracer.start_as_current_span(
            "charge", attributes={"amount": 12.5, "retries": 2, "ok": True}
        ) as root:
            pass
        trace_id = format_trace_id(root.get_span_context().trace_id)
        conn = connect(server.db, readonly=True)
        try:
            row = conn.execute("SELECT otel FROM spans WHERE trace_id = ?", (trace_id,)).fetchall()
            if row and bytes(row[0][0]).startswith(blobs.ZSTD_MAGIC):
                extras = trace_otel(conn, trace_id)
                break
        finally:
            conn.close()
        assert time.monotonic() < deadline, "OTLP extras still stored plain 30 s after the dictionary"
    provider.shutdown()
    (extra,) = extras.values()
    assert extra["attributes"] == {"amount": 12.5, "retries": 2, "ok": True}
    assert extra["scope"]["name"] == "packed.scope"
    assert extra["resource"]["attributes"]["service.name"] == "otel-packed"
    (read,) = server.get_json(f"/api/v2/trace/{trace_id}")
    assert read["tags"]["amount"] == "12.5" and read["tags"]["otel.scope.name"] == "packed.scope"


def test_retrained_dictionaries_leave_older_rows_readable(tmp_path):
    """Each dictionary is kept: rows packed with the first still read after the second."""
    store = Store(tmp_path / "t.db")
    settings = PrepareSettings()
    written: dict[str, list[dict]] = {}

    async def write(n_traces: int, service: str) -> None:
        preparer = Preparer(settings)  # a new one looks for the newest dictionary at once
        for _ in range(n_traces):
            trace_id = new_trace_id()
            llm_call = span(trace_id, f"{100:016x}", parent=f"{1:016x}", service=service, name="chat gpt-4o",
                            kind="CLIENT", tags={"gen_ai.request.model": "gpt-4o", "tenant.tier": service,
                                                 "gen_ai.usage.input_tokens": "10"})  # fmt: skip
            written[trace_id] = [*_trace(trace_id, 99, service), llm_call]
            await store.write_batch(preparer.rows([dict(s) for s in written[trace_id]]))

    async def scenario() -> list[bool]:
        trainer = blobs.Trainer(store, first_at=1_000, growth=2)
        trained = [await trainer.step()]  # nothing stored: not due
        await write(10, "first")
        trained.append(await trainer.step())
        await write(10, "second")  # packed with dictionary 1; the store has doubled
        trained.append(await trainer.step())
        await write(10, "third")  # packed with dictionary 2
        trained.append(await trainer.step())  # not due again until 4,000
        return trained

    try:
        assert asyncio.run(scenario()) == [False, True, True, False]
        conn = connect(store.path, readonly=True)
        try:
            frames = [bytes(b) for (b,) in conn.execute("SELECT json FROM spans ORDER BY id")]
            used = [
                zstandard.get_frame_parameters(b).dict_id for b in frames if b.startswith(blobs.ZSTD_MAGIC)
            ]
            assert sorted(set(used)) == [blobs.FIRST_ID, blobs.FIRST_ID + 1]
            assert len(used) == 2_000 and len(frames) == 3_000
            for trace_id, spans in written.items():
                assert _by_id(queries.get_trace(conn, trace_id, strict=True)) == _by_id(spans)
            # LLM usage grouped by a tag reads it from the (packed) span JSON in SQL
            by_tier = llm.usage(conn, llm.LlmWindow(0, 2**62), "tag:tenant.tier")
            assert {row["key"]: row["calls"] for row in by_tier} == {"first": 10, "second": 10, "third": 10}
        finally:
            conn.close()
    finally:
        store.close()
