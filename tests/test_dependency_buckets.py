"""/dependencies from per-minute pre-aggregated links equals linking every span of the window live."""

from __future__ import annotations

import time

import apsw
import orjson
import pytest

from tests.conftest import start_tracebox, wait_until
from tests.spans import NOW_US, dumps, new_trace_id, span
from tracebox.appliance.api import _link
from tracebox.appliance.demo import generate_traces
from tracebox.appliance.store.dependencies import BUCKET_US

FAST = {"TRACEBOX_DEPENDENCY_QUIET_SECONDS": "0.2", "TRACEBOX_DEPENDENCY_IDLE_SECONDS": "0.1"}


def db(server) -> apsw.Connection:
    return apsw.Connection(str(server.db), flags=apsw.SQLITE_OPEN_READONLY)


def scalar(server, sql: str, *args):
    conn = db(server)
    try:
        return conn.execute(sql, args).fetchall()[0][0]
    finally:
        conn.close()


def settled(server) -> bool:
    return scalar(server, "SELECT count(*) FROM dependency_dirty") == 0


def served(server, end_ms: int, lookback_ms: int) -> list[dict]:
    return server.get_json("/api/v2/dependencies", endTs=end_ms, lookback=lookback_ms)


def live(server, end_ms: int, lookback_ms: int) -> list[dict]:
    conn = db(server)
    try:
        return _link(conn, (end_ms - lookback_ms) * 1000, end_ms * 1000 + 999)
    finally:
        conn.close()


def windows(end_us: int, span_s: int) -> list[tuple[int, int]]:
    """(endTs, lookback) in ms: the whole range, and windows cutting buckets at odd places."""
    end_ms = end_us // 1000 + 5_000
    out = [(end_ms, (span_s + 60) * 1000)]
    for cut_end, cut_back in ((-47_123, 301_777), (-200_001, 123_457), (-1, 60_000), (-90_500, 1_000)):
        out.append((end_ms + cut_end, cut_back))
    return out


def post_traces(server, traces) -> None:
    spans = [s for trace in traces for s in trace]
    for i in range(0, len(spans), 500):
        assert server.post("/api/v2/spans", orjson.dumps(spans[i : i + 500])).status_code == 202


@pytest.fixture
def server(tmp_path):
    server = start_tracebox(tmp_path / "t.db", "--no-engine", **FAST)
    yield server
    server.stop()


def test_demo_traffic_equals_live_linking(server):
    end_us = NOW_US
    traces = generate_traces(300, seed=3, end_us=end_us, spread_s=600)
    post_traces(server, traces)
    for end_ms, back_ms in windows(end_us, 600):  # before the task caught up: mixed states
        assert served(server, end_ms, back_ms) == live(server, end_ms, back_ms)
    wait_until(lambda: settled(server))
    assert scalar(server, "SELECT count(*) FROM dependency_links") > 0
    for end_ms, back_ms in windows(end_us, 600):
        assert served(server, end_ms, back_ms) == live(server, end_ms, back_ms), (end_ms, back_ms)
    assert served(server, end_us // 1000 + 5000, 700_000)  # not trivially empty


def test_semantics_cases_equal_live_linking_across_buckets(server):
    base = NOW_US - NOW_US % BUCKET_US  # a bucket boundary
    t1, t2, t3 = new_trace_id(), new_trace_id(), new_trace_id()
    spans = [
        # a trace crossing a bucket boundary: root before it, the call after it
        span(t1, "1", service="web", kind="SERVER", ts=base - 2_000_000),
        span(t1, "2", parent="1", service="web", kind="CLIENT", remote="api", ts=base + 1_000_000),
        span(
            t1,
            "2",
            parent="1",
            service="api",
            kind="SERVER",
            shared=True,
            ts=base + 1_500_000,
            tags={"error": "x"},
        ),
        # messaging through a broker, uninstrumented client
        span(t2, "1", service="producer", kind="PRODUCER", remote="kafka", ts=base + 61_000_000),
        span(t2, "2", parent="1", service="consumer", kind="CONSUMER", remote="kafka", ts=base + 62_000_000),
        span(t3, "1", service="api", kind="SERVER", remote="browser", ts=base + 125_000_000),
    ]
    assert server.post("/api/v2/spans", dumps(spans)).status_code == 202
    wait_until(lambda: settled(server))
    end_ms = (base + 200_000_000) // 1000
    for end, back in (
        (end_ms, 400_000),
        (end_ms, 200_000),
        ((base + 500_000) // 1000, 100_000),
        (end_ms, 76_000),
    ):
        assert served(server, end, back) == live(server, end, back), (end, back)
    found = {(lk["parent"], lk["child"]): lk for lk in served(server, end_ms, 400_000)}
    assert found[("web", "api")] == {"parent": "web", "child": "api", "callCount": 1, "errorCount": 1}
    assert found[("producer", "kafka")]["callCount"] == 1 and found[("kafka", "consumer")]["callCount"] == 1
    assert found[("browser", "api")]["callCount"] == 1


def test_late_spans_relink_a_finished_bucket(server):
    base = NOW_US - NOW_US % BUCKET_US
    t = new_trace_id()
    end_ms, back_ms = (base + 300_000_000) // 1000, 600_000
    post = lambda *spans: server.post("/api/v2/spans", dumps(list(spans))).status_code  # noqa: E731
    assert post(span(t, "1", service="gw", kind="SERVER", ts=base + 10_000_000)) == 202
    wait_until(lambda: settled(server))
    linked = scalar(server, "SELECT linked_id FROM dependency_buckets WHERE bucket = ?", base // BUCKET_US)
    assert served(server, end_ms, back_ms) == []
    # a late call two minutes later in the same trace: counted by the root's bucket
    assert (
        post(span(t, "2", parent="1", service="gw", kind="CLIENT", remote="db", ts=base + 130_000_000)) == 202
    )
    assert served(server, end_ms, back_ms) == live(server, end_ms, back_ms)  # whatever the task has done
    wait_until(lambda: settled(server))
    assert (
        scalar(server, "SELECT linked_id FROM dependency_buckets WHERE bucket = ?", base // BUCKET_US)
        > linked
    )
    assert scalar(server, "SELECT calls FROM dependency_links WHERE parent = 'gw' AND child = 'db'") == 1
    assert served(server, end_ms, back_ms) == [{"parent": "gw", "child": "db", "callCount": 1}]
    # a late span earlier than the root moves the trace to an earlier bucket: counted once, there
    assert post(span(t, "0", service="edge", kind="CLIENT", remote="gw", ts=base - 90_000_000)) == 202
    assert served(server, end_ms, back_ms) == live(server, end_ms, back_ms)
    wait_until(lambda: settled(server))
    assert served(server, end_ms, back_ms) == live(server, end_ms, back_ms)
    assert scalar(server, "SELECT count(*) FROM dependency_links WHERE parent = 'gw' AND child = 'db'") == 1
    assert (
        scalar(server, "SELECT bucket FROM dependency_links WHERE parent = 'gw'")
        == (base - 90_000_000) // BUCKET_US
    )


def test_retention_removes_old_aggregated_links(tmp_path):
    server = start_tracebox(
        tmp_path / "t.db",
        "--no-engine",
        "--retention-days",
        "0.0001",
        "--retention-check-seconds",
        "0.5",
        **FAST,
    )
    try:
        now = time.time_ns() // 1000
        t_old, t_new = new_trace_id(), new_trace_id()
        old_ts = now - 3_000_000  # goes once older than 8.64 s
        spans = [
            span(t_old, "1", service="old-web", kind="SERVER", ts=old_ts),
            span(t_old, "2", parent="1", service="old-web", kind="CLIENT", remote="old-db", ts=old_ts),
        ]
        assert server.post("/api/v2/spans", dumps(spans)).status_code == 202
        wait_until(
            lambda: scalar(server, "SELECT count(*) FROM dependency_links WHERE parent = 'old-web'") == 1
        )
        wait_until(lambda: scalar(server, "SELECT count(*) FROM spans WHERE service = 'old-web'") == 0)
        newer = [
            span(t_new, "1", service="new-web", kind="CLIENT", remote="new-db", ts=time.time_ns() // 1000)
        ]
        assert server.post("/api/v2/spans", dumps(newer)).status_code == 202
        wait_until(
            lambda: scalar(server, "SELECT count(*) FROM dependency_links WHERE parent = 'old-web'") == 0
        )
        wait_until(
            lambda: (
                scalar(
                    server, "SELECT count(*) FROM dependency_buckets WHERE bucket < ?", old_ts // BUCKET_US
                )
                == 0
            )
        )
        end_ms = time.time_ns() // 1_000_000 + 1000
        found = served(server, end_ms, 600_000)
        assert ("old-web", "old-db") not in {(lk["parent"], lk["child"]) for lk in found}
        assert found == live(server, end_ms, 600_000)
    finally:
        server.stop()
