"""Retention by age and by size against a live server: old data goes, new data stays, ingest goes on."""

from __future__ import annotations

import threading

import apsw

from tests.conftest import start_tracebox, wait_until
from tests.spans import NOW_US, dumps, new_trace_id, span, tag_postings

DAY_US = 86_400_000_000
WAIT_S = 60


def exists(server, trace_id: str) -> bool:
    return server.get(f"/api/v2/trace/{trace_id}").status_code == 200


def test_old_spans_go_new_spans_stay(tmp_path):
    server = start_tracebox(tmp_path / "t.db", "--retention-days", "1", "--retention-check-seconds", "0.5")
    try:
        old, new = new_trace_id(), new_trace_id()
        llm_tags = {
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": "5",
        }
        body = [
            span(old, "1", service="legacy", ts=NOW_US - 3 * DAY_US, tags={"color": "red", **llm_tags}),
            span(old, "2", service="legacy", parent="1", ts=NOW_US - 3 * DAY_US),
            span(new, "1", service="current", tags={"color": "red"}),
        ]
        assert server.post("/api/v2/spans", dumps(body)).status_code == 202
        wait_until(lambda: not exists(server, old))
        assert exists(server, new)
        wait_until(lambda: "legacy" not in server.get_json("/api/v2/services"))
        assert "current" in server.get_json("/api/v2/services")
        metrics = server.get_json("/metrics")
        assert metrics["tracebox_retention_deleted_spans_total"] == 2
    finally:
        server.stop()
    conn = apsw.Connection(str(tmp_path / "t.db"))
    counts = [conn.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in ("spans", "llm_calls")]
    counts.insert(1, len(tag_postings(conn)))
    conn.close()
    assert counts[0] == 1 and counts[2] == 0
    assert counts[1] > 0  # the new span's postings stay
    assert counts[1] == len({("current", k, v) for k, v in {"color": "red"}.items()})


def test_size_cap_keeps_the_newest_and_gives_space_back(tmp_path):
    db = tmp_path / "t.db"
    server = start_tracebox(
        db, "--max-db-mb", "3", "--retention-check-seconds", "0.5", "--retention-days", "0"
    )
    try:
        ids = []
        for batch in range(20):  # ~10 MB of spans, oldest first
            trace_ids = [new_trace_id() for _ in range(50)]
            ids += trace_ids
            spans = [
                span(t, "1", ts=NOW_US - (20 - batch) * 60_000_000, tags={"pad": "x" * 10_000})
                for t in trace_ids
            ]
            assert server.post("/api/v2/spans", dumps(spans)).status_code == 202

        def under_cap() -> bool:
            conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
            try:
                size = conn.execute("PRAGMA page_size").fetchall()[0][0]
                used = (
                    conn.execute("PRAGMA page_count").fetchall()[0][0]
                    - conn.execute("PRAGMA freelist_count").fetchall()[0][0]
                )
            finally:
                conn.close()
            return used * size <= 3 * 1024 * 1024

        wait_until(under_cap)
        assert exists(server, ids[-1]) and not exists(server, ids[0])
    finally:
        server.stop()
    assert db.stat().st_size < 6 * 1024 * 1024  # pages handed back, not just freed


def test_ingest_goes_on_while_retention_deletes(tmp_path):
    server = start_tracebox(tmp_path / "t.db", "--retention-days", "1", "--retention-check-seconds", "0.5")
    try:
        # a backlog of old spans for retention to chew through...
        for _ in range(10):
            old = [span(new_trace_id(), "1", ts=NOW_US - 3 * DAY_US) for _ in range(2000)]
            assert server.post("/api/v2/spans", dumps(old)).status_code == 202
        statuses: list[int] = []
        fresh: list[str] = []

        def ingest() -> None:  # ...while new spans keep arriving (bounded: 40 requests)
            for _ in range(40):
                trace_id = new_trace_id()
                fresh.append(trace_id)
                statuses.append(server.post("/api/v2/spans", dumps([span(trace_id, "1")])).status_code)

        worker = threading.Thread(target=ingest)
        worker.start()
        worker.join(WAIT_S)
        assert not worker.is_alive()
        assert statuses == [202] * 40
        wait_until(lambda: server.get_json("/metrics")["tracebox_retention_deleted_spans_total"] == 20_000)
        assert all(exists(server, t) for t in fresh)
    finally:
        server.stop()
