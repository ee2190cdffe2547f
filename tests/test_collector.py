"""POST /api/v2/spans and /api/v1/spans: formats, gzip, and every refusal with its message."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.spans import dumps, new_trace_id, span


def count_spans(tracebox, trace_id: str) -> int:
    response = tracebox.get(f"/api/v2/trace/{trace_id}")
    return len(response.json()) if response.status_code == 200 else 0


def test_empty_list_is_accepted(tracebox):
    assert tracebox.post("/api/v2/spans", "[]").status_code == 202


def test_gzip_body(tracebox):
    trace_id = new_trace_id()
    body = gzip.compress(dumps([span(trace_id, "1")]).encode())
    response = tracebox.post("/api/v2/spans", body, **{"Content-Encoding": "gzip"})
    assert response.status_code == 202
    assert count_spans(tracebox, trace_id) == 1


def test_missing_content_type_is_json(tracebox):
    import requests

    trace_id = new_trace_id()
    response = requests.post(tracebox.url + "/api/v2/spans", data=dumps([span(trace_id, "1")]), timeout=10)
    assert response.status_code == 202
    assert count_spans(tracebox, trace_id) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "Malformed reading List<Span> from json"),
        ('{"traceId": "1"}', "Expected a JSON_V2 encoded list"),
        ('[{"id": "1"}]', "Missing traceId"),
        ('[{"traceId": "1"}]', "Missing id"),
        ('[{"traceId": "xyz", "id": "1"}]', "traceId should be a 1 to 32 character lower-hex string"),
        (
            '[{"traceId": "1", "id": "12345678901234567"}]',
            "id should be a 1 to 16 character lower-hex string",
        ),
        (
            '[{"traceId": "1", "id": "1", "timestamp": "soon"}]',
            "timestamp should be a number of microseconds",
        ),
        ('[{"traceId": "1", "id": "1", "annotations": [{"value": "x"}]}]', "Incomplete annotation"),
        ('["span"]', "Expected a span object"),
    ],
)
def test_malformed_bodies_get_400_naming_the_problem(tracebox, body, message):
    response = tracebox.post("/api/v2/spans", body)
    assert response.status_code == 400
    assert message in response.text


def test_a_rejected_request_stores_nothing(tracebox):
    trace_id = new_trace_id()
    good = span(trace_id, "1")
    bad = {"traceId": trace_id, "id": "not-hex"}
    response = tracebox.post("/api/v2/spans", json.dumps([good, bad]))
    assert response.status_code == 400
    assert count_spans(tracebox, trace_id) == 0


def test_bad_gzip(tracebox):
    response = tracebox.post("/api/v2/spans", b"\x1f\x8b\x08garbage", **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "Cannot gunzip spans" in response.text


def test_truncated_gzip(tracebox):
    body = gzip.compress(dumps([span(new_trace_id(), "1")]).encode())
    response = tracebox.post("/api/v2/spans", body[: len(body) // 2], **{"Content-Encoding": "gzip"})
    assert response.status_code == 400
    assert "Cannot gunzip spans" in response.text


def test_unsupported_content_type_is_415(tracebox):
    response = tracebox.post("/api/v2/spans", b"\x00\x01", content_type="application/x-thrift")
    assert response.status_code == 415
    assert "application/x-thrift" in response.text


def test_unsupported_content_encoding_is_415(tracebox):
    response = tracebox.post("/api/v2/spans", b"xx", **{"Content-Encoding": "br"})
    assert response.status_code == 415


def test_oversize_and_gzip_bomb_are_413(tmp_path):
    from tests.conftest import start_tracebox

    server = start_tracebox(tmp_path / "t.db", "--max-body-bytes", "100000")
    try:
        trace_id = new_trace_id()
        big = dumps([span(trace_id, str(i + 1), tags={"pad": "x" * 1000}) for i in range(200)])
        response = server.post("/api/v2/spans", big)
        assert response.status_code == 413
        assert "100000-byte limit" in response.text
        bomb = gzip.compress(b"[" + b" " * 50_000_000 + b"]")
        assert len(bomb) < 100_000
        response = server.post("/api/v2/spans", bomb, **{"Content-Encoding": "gzip"})
        assert response.status_code == 413
        assert "after decompression" in response.text
        assert count_spans(server, trace_id) == 0
        assert server.get("/health").status_code == 200
    finally:
        server.stop()


def test_v1_endpoint_converts_to_v2(tracebox):
    trace_id = new_trace_id()
    endpoint = {"serviceName": "legacy", "ipv4": "10.1.2.3"}
    v1 = [
        {
            "traceId": trace_id,
            "id": "2",
            "parentId": "1",
            "name": "get",
            "timestamp": 1_700_000_000_000_000,
            "duration": 300,
            "annotations": [
                {"timestamp": 1_700_000_000_000_000, "value": "sr", "endpoint": endpoint},
                {"timestamp": 1_700_000_000_000_300, "value": "ss", "endpoint": endpoint},
            ],
            "binaryAnnotations": [{"key": "http.path", "value": "/x", "endpoint": endpoint}],
        }
    ]
    assert tracebox.post("/api/v1/spans", json.dumps(v1)).status_code == 202
    [got] = tracebox.get_json(f"/api/v2/trace/{trace_id}")
    assert got["kind"] == "SERVER"
    assert got["localEndpoint"] == {"serviceName": "legacy", "ipv4": "10.1.2.3"}
    assert got["tags"] == {"http.path": "/x"}
    assert got["parentId"] == "0000000000000001"
    assert got["duration"] == 300


def test_collector_sample_rate_keeps_whole_traces_by_id(tmp_path):
    from tests.conftest import start_tracebox

    server = start_tracebox(tmp_path / "t.db", env_rate := "--sample-rate", "0.5")
    del env_rate
    try:
        ids = [f"{i:016x}" for i in range(1, 400, 7)] + [f"{(1 << 63) + i * 977:016x}" for i in range(60)]
        body = [span(t, s) for t in ids for s in ("1", "2")]
        assert server.post("/api/v2/spans", dumps(body)).status_code == 202
        kept = [t for t in ids if count_spans(server, t)]
        assert 0 < len(kept) < len(ids)
        assert all(count_spans(server, t) == 2 for t in kept)  # never half a trace
        metrics = server.get_json("/metrics")
        assert metrics["zipkin_collector_spans_dropped_total{transport=http}"] == 2 * (len(ids) - len(kept))
    finally:
        server.stop()
