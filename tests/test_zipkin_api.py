"""Zipkin v2 query semantics against a live server, one test per rule (after Zipkin's ITSpanStore)."""

from __future__ import annotations

import itertools

import pytest

from tests.spans import NOW_US, dumps, new_trace_id, span

_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_names)}"


def store(tracebox, *spans) -> None:
    response = tracebox.post("/api/v2/spans", dumps(list(spans)))
    assert response.status_code == 202, response.text


def trace_ids(traces) -> list[str]:
    return [t[0]["traceId"] for t in traces]


def search(tracebox, **params):
    params.setdefault("endTs", NOW_US // 1000 + 1000)
    return tracebox.get_json("/api/v2/traces", **params)


def test_trace_round_trips_every_field(tracebox):
    trace_id = new_trace_id(128)
    sent = span(
        trace_id,
        "a",
        kind="SERVER",
        remote="client-app",
        tags={"http.method": "GET", "http.path": "/api"},
        annotations=[(NOW_US + 10, "wr"), (NOW_US + 5, "ws")],
        debug=True,
    )
    sent["localEndpoint"] = {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080}
    store(tracebox, sent)
    [got] = tracebox.get_json(f"/api/v2/trace/{trace_id}")
    assert got == {
        "traceId": trace_id,
        "id": "000000000000000a",
        "kind": "SERVER",
        "name": "get",
        "timestamp": NOW_US,
        "duration": 1000,
        "localEndpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080},
        "remoteEndpoint": {"serviceName": "client-app"},
        "annotations": [{"timestamp": NOW_US + 5, "value": "ws"}, {"timestamp": NOW_US + 10, "value": "wr"}],
        "tags": {"http.method": "GET", "http.path": "/api"},
        "debug": True,
    }


def test_ingest_normalisation(tracebox):
    trace_id = new_trace_id()
    padded = "0" * 16 + trace_id  # a 128-bit id with a zero high half is a 64-bit id
    store(
        tracebox,
        span(padded.upper(), "1", service="MixedCase", name="GET /Users", kind="client", shared=True),
    )
    [got] = tracebox.get_json(f"/api/v2/trace/{trace_id}")
    assert got["traceId"] == trace_id
    assert got["id"] == "0000000000000001"
    assert got["name"] == "get /users"
    assert got["localEndpoint"] == {"serviceName": "mixedcase"}
    assert got["kind"] == "CLIENT"
    assert "shared" not in got  # never on a client span


def test_strict_trace_id_separates_64_and_128_bit_ids(tracebox):
    low = new_trace_id()
    high = "1" * 16 + low
    store(tracebox, span(low, "1"), span(high, "2"))
    assert [s["id"] for s in tracebox.get_json(f"/api/v2/trace/{high}")] == ["0000000000000002"]
    assert [s["id"] for s in tracebox.get_json(f"/api/v2/trace/{low}")] == ["0000000000000001"]


def test_non_strict_trace_id_groups_by_low_64_bits(tmp_path):
    from tests.conftest import start_tracebox

    server = start_tracebox(tmp_path / "t.db", "--no-strict-trace-id")
    try:
        low = new_trace_id()
        high = "1" * 16 + low
        store(server, span(low, "1"), span(high, "2"))
        for asked in (low, high):
            got = server.get_json(f"/api/v2/trace/{asked}")
            assert sorted(s["id"] for s in got) == ["0000000000000001", "0000000000000002"]
        found = search(server, serviceName="frontend")
        assert len(found) == 1 and len(found[0]) == 2
    finally:
        server.stop()


def test_spans_in_several_batches_and_out_of_order(tracebox):
    trace_id = new_trace_id()
    child = span(trace_id, "2", parent="1", ts=NOW_US + 100, duration=10)
    root = span(trace_id, "1", ts=NOW_US, duration=500)
    store(tracebox, child)
    store(tracebox, root)
    got = tracebox.get_json(f"/api/v2/trace/{trace_id}")
    assert sorted(s["id"] for s in got) == ["0000000000000001", "0000000000000002"]


def test_late_duration_fragment_is_merged_and_searchable(tracebox):
    trace_id = new_trace_id()
    service = unique("late")
    store(tracebox, span(trace_id, "1", service=service, duration=None))
    store(
        tracebox,
        {"traceId": trace_id, "id": "1", "duration": 5_000_000, "localEndpoint": {"serviceName": service}},
    )
    [got] = tracebox.get_json(f"/api/v2/trace/{trace_id}")
    assert got["duration"] == 5_000_000 and got["timestamp"] == NOW_US
    found = search(tracebox, serviceName=service, minDuration=4_000_000)
    assert trace_ids(found) == [trace_id]


def test_service_name_scopes_other_conditions(tracebox):
    trace_id = new_trace_id()
    a, b = unique("svc-a"), unique("svc-b")
    store(
        tracebox,
        span(trace_id, "1", service=a, name="root", tags={"color": "red"}, duration=10),
        span(trace_id, "2", parent="1", service=b, name="db-call", duration=5000),
    )
    assert trace_ids(search(tracebox, serviceName=b, spanName="db-call")) == [trace_id]
    assert search(tracebox, serviceName=a, spanName="db-call") == []
    assert trace_ids(search(tracebox, serviceName=a, annotationQuery="color=red")) == [trace_id]
    assert search(tracebox, serviceName=b, annotationQuery="color=red") == []
    assert trace_ids(search(tracebox, serviceName=b, minDuration=4000)) == [trace_id]
    assert search(tracebox, serviceName=a, minDuration=4000) == []


def test_conditions_may_be_met_by_different_spans(tracebox):
    trace_id = new_trace_id()
    service = unique("multi")
    store(
        tracebox,
        span(trace_id, "1", service=service, name="root", tags={"a": "1"}),
        span(trace_id, "2", parent="1", service=service, name="child", tags={"b": "2"}, duration=9000),
    )
    found = search(
        tracebox, serviceName=service, spanName="root", annotationQuery="a=1 and b=2", minDuration=8000
    )
    assert trace_ids(found) == [trace_id]
    assert search(tracebox, serviceName=service, annotationQuery="a=1 and b=3") == []


def test_error_bare_key_versus_error_value(tracebox):
    service = unique("errs")
    empty, one, annotated = new_trace_id(), new_trace_id(), new_trace_id()
    store(
        tracebox,
        span(empty, "1", service=service, tags={"error": ""}),
        span(one, "1", service=service, tags={"error": "1"}),
        span(annotated, "1", service=service, annotations=[(NOW_US + 1, "error")]),
    )
    assert sorted(trace_ids(search(tracebox, serviceName=service, annotationQuery="error"))) == sorted(
        [empty, one, annotated]
    )
    assert trace_ids(search(tracebox, serviceName=service, annotationQuery="error=1")) == [one]
    # without serviceName too
    assert set(trace_ids(search(tracebox, annotationQuery="error=1", limit=1000))) >= {one}
    assert empty not in trace_ids(search(tracebox, annotationQuery="error=1", limit=1000))


def test_lookback_and_end_ts_window(tracebox):
    service = unique("window")
    hour = 3_600_000_000
    old, new = new_trace_id(), new_trace_id()
    store(
        tracebox,
        span(old, "1", service=service, ts=NOW_US - 2 * hour),
        span(new, "1", service=service, ts=NOW_US),
    )
    end_ms = NOW_US // 1000 + 1
    assert trace_ids(search(tracebox, serviceName=service, endTs=end_ms, lookback=3_600_000)) == [new]
    assert sorted(
        trace_ids(search(tracebox, serviceName=service, endTs=end_ms, lookback=3 * 3_600_000))
    ) == sorted([old, new])
    earlier_end = (NOW_US - hour) // 1000
    assert trace_ids(search(tracebox, serviceName=service, endTs=earlier_end, lookback=3_600_000 * 2)) == [
        old
    ]


def test_limit_keeps_the_newest_traces(tracebox):
    service = unique("limit")
    ids = [new_trace_id() for _ in range(5)]
    store(tracebox, *(span(t, "1", service=service, ts=NOW_US - (5 - i) * 1000) for i, t in enumerate(ids)))
    assert trace_ids(search(tracebox, serviceName=service, limit=2)) == [ids[4], ids[3]]


def test_names_differing_only_in_case_are_one(tracebox):
    service = unique("CaseSvc")
    store(
        tracebox,
        span(new_trace_id(), "1", service=service, name="GET"),
        span(new_trace_id(), "1", service=service.lower(), name="get"),
    )
    services = tracebox.get_json("/api/v2/services")
    assert service.lower() in services and service not in services
    assert tracebox.get_json("/api/v2/spans", serviceName=service) == ["get"]
    assert len(search(tracebox, serviceName=service.upper(), spanName="GeT")) == 2


def test_name_lists_are_sorted(tracebox):
    service = unique("sorted")
    trace_id = new_trace_id()
    store(
        tracebox,
        *(
            span(trace_id, str(i), service=service, name=n, remote=r)
            for i, (n, r) in enumerate([("zeta", "redis"), ("alpha", "mysql"), ("mid", "kafka")], start=1)
        ),
    )
    assert tracebox.get_json("/api/v2/spans", serviceName=service) == ["alpha", "mid", "zeta"]
    assert tracebox.get_json("/api/v2/remoteServices", serviceName=service) == ["kafka", "mysql", "redis"]
    services = tracebox.get_json("/api/v2/services")
    assert services == sorted(services)


def test_remote_service_name_search(tracebox):
    service = unique("caller")
    hit, miss = new_trace_id(), new_trace_id()
    store(
        tracebox,
        span(hit, "1", service=service, kind="CLIENT", remote="payments"),
        span(miss, "1", service=service, kind="CLIENT", remote="inventory"),
    )
    assert trace_ids(search(tracebox, serviceName=service, remoteServiceName="payments")) == [hit]


def test_max_duration_bounds(tracebox):
    service = unique("dur")
    short, mid, long_ = new_trace_id(), new_trace_id(), new_trace_id()
    store(
        tracebox,
        span(short, "1", service=service, duration=100),
        span(mid, "1", service=service, duration=1000),
        span(long_, "1", service=service, duration=10000),
    )
    assert trace_ids(search(tracebox, serviceName=service, minDuration=500, maxDuration=5000)) == [mid]


def test_trace_many(tracebox):
    a, b, missing = new_trace_id(), new_trace_id(), new_trace_id()
    store(tracebox, span(a, "1"), span(b, "1"))
    found = tracebox.get_json("/api/v2/traceMany", traceIds=f"{a},{b},{missing}")
    assert sorted(trace_ids(found)) == sorted([a, b])


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/v2/traces", {"limit": "0"}, "limit <= 0"),
        ("/api/v2/traces", {"maxDuration": "10"}, "maxDuration is only valid with minDuration"),
        ("/api/v2/traces", {"minDuration": "10", "maxDuration": "5"}, "maxDuration < minDuration"),
        ("/api/v2/traces", {"endTs": "-1"}, "endTs <= 0"),
        ("/api/v2/traces", {"lookback": "0"}, "lookback <= 0"),
        ("/api/v2/traces", {"limit": "ten"}, "limit should be an integer"),
        ("/api/v2/spans", {}, "serviceName is required"),
        ("/api/v2/remoteServices", {}, "serviceName is required"),
        ("/api/v2/dependencies", {}, "endTs is required"),
        ("/api/v2/autocompleteValues", {}, "key is required"),
        ("/api/v2/traceMany", {"traceIds": ""}, "traceIds parameter is empty"),
        ("/api/v2/trace/xyz", {}, "should be a 1 to 32 character lower-hex string"),
    ],
)
def test_bad_query_parameters_get_zipkins_messages(tracebox, path, params, message):
    response = tracebox.get(path, **params)
    assert response.status_code == 400
    assert message in response.text


def test_unknown_trace_is_404_with_its_id(tracebox):
    missing = new_trace_id()
    response = tracebox.get(f"/api/v2/trace/{missing}")
    assert response.status_code == 404
    assert response.text == f"{missing} not found"


def test_zipkin_prefix_mounts_the_same_api(tracebox):
    trace_id = new_trace_id()
    store(tracebox, span(trace_id, "1"))
    assert tracebox.get_json(f"/zipkin/api/v2/trace/{trace_id}") == tracebox.get_json(
        f"/api/v2/trace/{trace_id}"
    )


def test_cors_preflight_and_headers(tracebox):
    import requests

    response = requests.options(
        tracebox.url + "/api/v2/services",
        headers={"Origin": "http://grafana.local", "Access-Control-Request-Method": "GET"},
        timeout=10,
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    response = tracebox.get("/api/v2/services")
    assert "Access-Control-Allow-Origin" not in response.headers  # no Origin, no CORS headers


def test_autocomplete(tmp_path):
    from tests.conftest import start_tracebox

    server = start_tracebox(tmp_path / "t.db", "--autocomplete-keys", "env,region")
    try:
        store(
            server,
            span(new_trace_id(), "1", tags={"env": "prod", "region": "eu", "other": "x"}),
            span(new_trace_id(), "1", tags={"env": "dev"}),
        )
        assert server.get_json("/api/v2/autocompleteKeys") == ["env", "region"]
        assert server.get_json("/api/v2/autocompleteValues", key="env") == ["dev", "prod"]
        assert server.get_json("/api/v2/autocompleteValues", key="other") == []
    finally:
        server.stop()


def test_restart_keeps_everything_acknowledged(fresh_tracebox):
    ids = [new_trace_id() for _ in range(20)]
    for trace_id in ids:
        store(
            fresh_tracebox,
            span(trace_id, "1", service="durable"),
            span(trace_id, "2", parent="1", service="durable"),
        )
    fresh_tracebox.restart()
    for trace_id in ids:
        assert len(fresh_tracebox.get_json(f"/api/v2/trace/{trace_id}")) == 2
    assert fresh_tracebox.get_json("/api/v2/services") == ["durable"]
