"""The time-ordered indexes keyed by ten-second slot and arrival: every search still answers newest
first by timestamp when spans arrive out of order, and a database with the former indexes
(keyed by timestamp) is migrated on start."""

from __future__ import annotations

import random

import apsw

from tests.conftest import start_tracebox
from tests.spans import NOW_US, dumps, new_trace_id, span
from tracebox.appliance.store.consumer import SpanConsumer
from tracebox.appliance.store.queries import MAX_NAME_MERGE
from tracebox.appliance.store.rows import build_batch
from tracebox.appliance.store.schema import MIGRATIONS, migrate
from tracebox.appliance.store.slots import SLOT_US

SECOND = 1_000_000


def _search(server, **params) -> list[str]:
    params.setdefault("endTs", NOW_US // 1000 + 1000)
    params.setdefault("lookback", 3_600_000)
    return [trace[0]["traceId"] for trace in server.get_json("/api/v2/traces", **params)]


def _shuffled_traffic(count: int, seed: int) -> list[dict]:
    """Single-span traces over ~20 slots, posted in an order far from their timestamps': each
    span arrives up to a minute (six slots) after it started, some long after, some first."""
    rng = random.Random(seed)
    spans = []
    for i in range(count):
        ts = NOW_US - rng.randrange(200 * SECOND) - i  # distinct timestamps: no ties to order
        spans.append(
            span(
                new_trace_id(),
                "1",
                service="shop" if i % 3 else "cart",
                name="checkout" if i % 2 else "browse",
                kind="CLIENT",
                remote="db" if i % 4 == 0 else None,
                ts=ts,
                duration=1000 + rng.randrange(100_000),
            )
        )
    spans.sort(key=lambda s: s["timestamp"] + rng.randrange(60 * SECOND))
    return spans


def _expected(spans: list[dict], keep, limit: int) -> list[str]:
    return [s["traceId"] for s in sorted(filter(keep, spans), key=lambda s: -s["timestamp"])][:limit]


def test_searches_answer_newest_first_across_slots_whatever_the_arrival_order(fresh_tracebox):
    spans = _shuffled_traffic(1200, seed=3)
    for start in range(0, len(spans), 100):
        assert fresh_tracebox.post("/api/v2/spans", dumps(spans[start : start + 100])).status_code == 202

    def service(name):
        return lambda s: s["localEndpoint"]["serviceName"] == name

    cases = [
        ({"serviceName": "shop"}, service("shop")),
        (
            {"serviceName": "shop", "spanName": "browse"},
            lambda s: service("shop")(s) and s["name"] == "browse",
        ),
        (
            {"serviceName": "cart", "minDuration": "60000"},
            lambda s: service("cart")(s) and s["duration"] >= 60000,
        ),
        ({"remoteServiceName": "db"}, lambda s: "remoteEndpoint" in s),
        ({"spanName": "checkout"}, lambda s: s["name"] == "checkout"),
    ]
    for params, keep in cases:
        for limit in (1, 7, 150):
            assert _search(fresh_tracebox, limit=str(limit), **params) == _expected(spans, keep, limit), (
                params
            )
    # a window that starts and ends inside slots keeps exactly the spans inside it
    end_us = NOW_US - 95 * SECOND + SLOT_US // 3
    lookback_us = 41 * SECOND
    inside = [s for s in spans if end_us - lookback_us <= s["timestamp"] <= end_us]
    got = _search(
        fresh_tracebox,
        serviceName="shop",
        endTs=str(end_us // 1000),
        lookback=str(lookback_us // 1000),
        limit="1000",
    )
    assert got == _expected(inside, service("shop"), 1000)


def test_a_search_by_service_merges_its_span_names_few_or_many(fresh_tracebox):
    """By serviceName alone, newest first: "few" has three span names and unnamed spans (read from
    the service+name index), "many" more names than that index is read for (it scans the time index
    instead)."""
    rng = random.Random(11)
    spans = []
    for i in range(600):
        service = "few" if i % 2 else "many"
        if service == "few":
            name = None if i % 5 == 0 else f"op{i % 3}"
        else:
            name = f"route{i // 2 % (MAX_NAME_MERGE + 8)}"  # every other i: i // 2 runs through them all
        ts = NOW_US - rng.randrange(150 * SECOND) - i  # distinct timestamps over ~15 slots
        spans.append(
            span(new_trace_id(), "1", service=service, name=name, ts=ts, duration=1 + rng.randrange(9000))
        )
    rng.shuffle(spans)
    for start in range(0, len(spans), 150):
        assert fresh_tracebox.post("/api/v2/spans", dumps(spans[start : start + 150])).status_code == 202

    for service in ("few", "many"):
        mine = [s for s in spans if s["localEndpoint"]["serviceName"] == service]
        names = {s.get("name") for s in mine}
        if service == "few":
            assert None in names and len(names) <= MAX_NAME_MERGE
        else:
            assert len(names) > MAX_NAME_MERGE
        for limit in (1, 10, 400):
            got = _search(fresh_tracebox, serviceName=service, limit=str(limit))
            assert got == _expected(mine, lambda s: True, limit), (service, limit)
        got = _search(fresh_tracebox, serviceName=service, minDuration="5000", limit="400")
        assert got == _expected(mine, lambda s: s["duration"] >= 5000, 400), service
    assert _search(fresh_tracebox, serviceName="none-stored") == []


def test_a_database_with_timestamp_keyed_indexes_is_migrated(tmp_path):
    db = tmp_path / "old.db"
    conn = apsw.Connection(str(db))
    migrate(conn, MIGRATIONS[:6])  # before the slotted indexes
    spans = _shuffled_traffic(300, seed=5)
    with conn:
        SpanConsumer(conn)(conn, build_batch([dict(s) for s in spans]))
    old = {
        r[0]
        for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'spans'")
    }
    assert "spans_service_name_ts" in old
    conn.close()

    server = start_tracebox(db)
    try:
        got = _search(server, serviceName="shop", spanName="checkout", limit="50")
        shop_checkout = [
            s for s in spans if s["localEndpoint"]["serviceName"] == "shop" and s["name"] == "checkout"
        ]
        assert got == _expected(shop_checkout, lambda s: True, 50)
        links = server.get_json("/api/v2/dependencies", endTs=str(NOW_US // 1000 + 1000), lookback="3600000")
        assert {(link["parent"], link["child"]) for link in links} == {("shop", "db"), ("cart", "db")}
    finally:
        server.stop()
    conn = apsw.Connection(str(db))
    try:
        now = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'spans'"
            )
        }
    finally:
        conn.close()
    assert now == {
        "spans_trace",
        "spans_service_name_slot",
        "spans_remote_slot",
        "spans_slot",
    }
