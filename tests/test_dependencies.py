"""GET /api/v2/dependencies over a live server: links as Zipkin's DependencyLinker draws them."""

from __future__ import annotations

import itertools
import time

from tests.spans import NOW_US, dumps, new_trace_id, span

_n = itertools.count()


def links(server, start_us: int) -> dict[tuple[str, str], dict]:
    found = server.get_json("/api/v2/dependencies", endTs=NOW_US // 1000 + 1000, lookback=3_600_000)
    return {(link["parent"], link["child"]): link for link in found}


def names(*roles: str) -> list[str]:
    n = next(_n)
    return [f"{role}-{n}" for role in roles]


def post(server, *spans) -> None:
    assert server.post("/api/v2/spans", dumps(list(spans))).status_code == 202


def test_instrumented_client_and_server(tracebox):
    web, api = names("web", "api")
    for i in range(3):
        t = new_trace_id()
        error = {"error": "boom"} if i == 0 else None
        post(
            tracebox,
            span(t, "1", service=web, kind="SERVER"),
            span(t, "2", parent="1", service=web, kind="CLIENT", remote=api),
            span(t, "2", parent="1", service=api, kind="SERVER", shared=True, tags=error),
        )
    link = links(tracebox, NOW_US)[(web, api)]
    assert link == {"parent": web, "child": api, "callCount": 3, "errorCount": 1}


def test_uninstrumented_server_is_named_by_the_client(tracebox):
    web, db = names("web", "db")
    t = new_trace_id()
    post(
        tracebox,
        span(t, "1", service=web, kind="SERVER"),
        span(t, "2", parent="1", service=web, kind="CLIENT", remote=db),
    )
    link = links(tracebox, NOW_US)[(web, db)]
    assert link == {"parent": web, "child": db, "callCount": 1}  # errorCount omitted when 0


def test_uninstrumented_client_is_named_by_the_server(tracebox):
    browser, api = names("browser", "api")
    t = new_trace_id()
    post(tracebox, span(t, "1", service=api, kind="SERVER", remote=browser))
    assert links(tracebox, NOW_US)[(browser, api)]["callCount"] == 1


def test_messaging_links_through_the_broker(tracebox):
    producer, consumer, broker = names("producer", "consumer", "kafka")
    t = new_trace_id()
    post(
        tracebox,
        span(t, "1", service=producer, kind="PRODUCER", remote=broker),
        span(t, "2", parent="1", service=consumer, kind="CONSUMER", remote=broker),
    )
    found = links(tracebox, NOW_US)
    assert found[(producer, broker)]["callCount"] == 1
    assert found[(broker, consumer)]["callCount"] == 1
    assert (producer, consumer) not in found


def test_loopback_call_links_a_service_to_itself(tracebox):
    [svc] = names("loop")
    t = new_trace_id()
    post(
        tracebox,
        span(t, "1", service=svc, kind="SERVER"),
        span(t, "2", parent="1", service=svc, kind="CLIENT", remote=svc),
        span(t, "2", parent="1", service=svc, kind="SERVER", shared=True),
    )
    assert links(tracebox, NOW_US)[(svc, svc)]["callCount"] == 1


def test_window_excludes_old_traces(tracebox):
    web, old = names("web", "old")
    t = new_trace_id()
    two_hours = 2 * 3_600_000_000
    post(
        tracebox,
        span(t, "1", service=web, kind="SERVER", ts=NOW_US - two_hours),
        span(t, "2", parent="1", service=web, kind="CLIENT", remote=old, ts=NOW_US - two_hours),
    )
    assert (web, old) not in links(tracebox, NOW_US)


FAR_US = (2**63 - 1) // 1000 * 1000 - 1000  # the last whole millisecond a query window can reach


def test_a_timestamp_at_the_end_of_time_does_not_break_the_window(tmp_path):
    """Timestamps next to 2^63 - 1 µs are valid; bucket arithmetic near them must stay in range."""
    from tests.conftest import start_tracebox

    server = start_tracebox(
        tmp_path / "t.db", TRACEBOX_DEPENDENCY_QUIET_SECONDS="0", TRACEBOX_DEPENDENCY_IDLE_SECONDS="0.2"
    )
    try:
        web, api = names("web", "api")
        post(
            server,
            span(
                new_trace_id(),
                "1",
                service="far",
                kind="CLIENT",
                remote="future",
                ts=FAR_US,
                duration=None,
            ),
        )
        t = new_trace_id()
        post(
            server,
            span(t, "1", service=web, kind="SERVER"),
            span(t, "2", parent="1", service=web, kind="CLIENT", remote=api),
        )
        for _ in range(2):  # before and after the background linker has seen both minutes
            assert links(server, NOW_US)[(web, api)]["callCount"] == 1
            far = server.get_json("/api/v2/dependencies", endTs=(2**63 - 1) // 1000, lookback=60_000)
            assert far == [{"parent": "far", "child": "future", "callCount": 1}]
            deadline = time.monotonic() + 30
            while (
                server.get_json("/metrics").get("tracebox_dependency_dirty_buckets", 0)
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
    finally:
        server.stop()
