"""Real Zipkin clients round-trip through a live tracebox: what they send comes back intact."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from opentelemetry.exporter.zipkin.json import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id

ROOT = Path(__file__).resolve().parents[1]
PROTO_PEER_PYTHON = ROOT / ".peers" / "zipkin-proto" / "bin" / "python"


def zipkin_kind(otel_kind: str) -> str | None:
    return {"SERVER": "SERVER", "CLIENT": "CLIENT", "PRODUCER": "PRODUCER", "CONSUMER": "CONSUMER"}.get(
        otel_kind
    )


def assert_round_trip(tracebox, sent: list[dict], service: str) -> None:
    """Each span the SDK sent is stored with its ids, name, kind, times, endpoint, tags and annotations."""
    by_trace: dict[str, list[dict]] = {}
    for span in sent:
        by_trace.setdefault(span["traceId"], []).append(span)
    for trace_id, spans in by_trace.items():
        stored = {s["id"]: s for s in tracebox.get_json(f"/api/v2/trace/{trace_id}")}
        assert set(stored) == {s["id"] for s in spans}
        for span in spans:
            got = stored[span["id"]]
            assert got["traceId"] == trace_id
            assert got.get("parentId") == span["parentId"]
            assert got["name"] == span["name"].lower()
            assert got.get("kind") == zipkin_kind(span["kind"])
            assert abs(got["timestamp"] - span["timestamp"]) <= 1
            assert abs(got["duration"] - span["duration"]) <= 1
            assert got["localEndpoint"]["serviceName"] == service
            for key, value in span["attributes"].items():
                expected = str(value).lower() if isinstance(value, bool) else str(value)
                assert got["tags"][key] == expected, key
            # OpenTelemetry's Zipkin exporters write an event as the annotation {"<name>": {attributes}}
            annotations = [json.loads(a["value"]) for a in got.get("annotations", [])]
            assert [next(iter(a)) for a in annotations] == span["events"]


def describe(span) -> dict:
    return {
        "traceId": format_trace_id(span.context.trace_id),
        "id": format_span_id(span.context.span_id),
        "parentId": format_span_id(span.parent.span_id) if span.parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "timestamp": span.start_time // 1000,
        "duration": (span.end_time - span.start_time) // 1000,
        "attributes": dict(span.attributes),
        "events": [event.name for event in span.events],
    }


def test_opentelemetry_zipkin_json_exporter(tracebox):
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "Checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(ZipkinExporter(endpoint=tracebox.url + "/api/v2/spans")))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("tests.zipkin_json")
    for index in range(3):
        with tracer.start_as_current_span("POST /Cart", kind=SpanKind.SERVER) as root:
            root.set_attributes({"http.method": "POST", "http.status_code": 201, "try": index, "ok": True})
            with tracer.start_as_current_span("charge", kind=SpanKind.CLIENT) as child:
                child.set_attribute("peer.service", "payments")
                child.add_event("retry")
                child.set_status(Status(StatusCode.ERROR, "card declined"))
            with tracer.start_as_current_span("render"):
                pass
    provider.shutdown()
    sent = [describe(s) for s in memory.get_finished_spans()]
    assert len(sent) == 9
    assert_round_trip(tracebox, sent, "checkout")
    client = next(s for s in sent if s["name"] == "charge")
    [stored] = [s for s in tracebox.get_json(f"/api/v2/trace/{client['traceId']}") if s["id"] == client["id"]]
    assert stored["tags"]["peer.service"] == "payments"  # this exporter sends no remoteEndpoint
    assert stored["tags"]["otel.status_code"] == "ERROR"
    assert stored["tags"]["error"] == "card declined"


@pytest.mark.skipif(not PROTO_PEER_PYTHON.exists(), reason="peer venv missing: run `bash .ci/peers`")
def test_opentelemetry_zipkin_proto_exporter(tracebox):
    script = ROOT / "tests" / "peers" / "zipkin_proto_exporter.py"
    result = subprocess.run(
        [
            str(PROTO_PEER_PYTHON),
            str(script),
            "--endpoint",
            tracebox.url + "/api/v2/spans",
            "--trace-count",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert len(report["traceIds"]) == 3 and len(report["spans"]) == 6
    assert_round_trip(tracebox, report["spans"], "zipkin-proto-peer")


def test_py_zipkin_v1_client(tracebox):
    """py_zipkin's v1 JSON encoder, the format of old Zipkin clients, posted to /api/v1/spans."""
    from py_zipkin.encoding import Encoding, create_endpoint, get_encoder
    from py_zipkin.encoding._helpers import Span as PySpan
    from py_zipkin.util import generate_random_64bit_string

    encoder = get_encoder(Encoding.V1_JSON)
    trace_id = generate_random_64bit_string()
    server = create_endpoint(port=8080, service_name="Legacy-API", host="10.0.0.7")
    client_remote = create_endpoint(port=3306, service_name="mysql", host="10.0.0.9")
    spans = [
        PySpan(
            trace_id=trace_id,
            name="GET /things",
            parent_id=None,
            span_id="0000000000000001",
            kind=__import__("py_zipkin").Kind.SERVER,
            timestamp=1_700_000_000.0,
            duration=0.25,
            local_endpoint=server,
            annotations={"cache.miss": 1_700_000_000.1},
            tags={"http.path": "/things"},
        ),
        PySpan(
            trace_id=trace_id,
            name="query",
            parent_id="0000000000000001",
            span_id="0000000000000002",
            kind=__import__("py_zipkin").Kind.CLIENT,
            timestamp=1_700_000_000.05,
            duration=0.1,
            local_endpoint=server,
            remote_endpoint=client_remote,
        ),
    ]
    body = "[" + ",".join(encoder.encode_span(s) for s in spans) + "]"
    assert tracebox.post("/api/v1/spans", body).status_code == 202
    stored = {s["id"]: s for s in tracebox.get_json(f"/api/v2/trace/{trace_id}")}
    root, query = stored["0000000000000001"], stored["0000000000000002"]
    assert root["kind"] == "SERVER" and root["name"] == "get /things"
    assert root["timestamp"] == 1_700_000_000_000_000 and root["duration"] == 250_000
    assert root["localEndpoint"] == {"serviceName": "legacy-api", "ipv4": "10.0.0.7", "port": 8080}
    assert root["tags"] == {"http.path": "/things"}
    assert [a["value"] for a in root["annotations"]] == ["cache.miss"]
    assert query["kind"] == "CLIENT" and query["parentId"] == "0000000000000001"
    assert query["remoteEndpoint"] == {"serviceName": "mysql", "ipv4": "10.0.0.9", "port": 3306}
    assert query["duration"] == 100_000
