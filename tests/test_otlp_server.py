"""OTLP against a live server: SDK exporters configured by environment alone, hand-written JSON,
and every refusal of /v1/traces with its status code and google.rpc.Status message."""

from __future__ import annotations

import gzip
import json

import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id

PROTOBUF = {"Content-Type": "application/x-protobuf"}


def emit(exporter, service: str) -> dict[str, str]:
    """A SERVER span with a CLIENT child carrying typed attributes, an event and an error status."""
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "deployment.environment": "test"})
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.checkout", "1.2.3")
    with (
        tracer.start_as_current_span("POST /pay", kind=SpanKind.SERVER) as root,
        tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as child,
    ):
        attributes = {"peer.service": "payments", "server.port": 8443, "retry": True, "amount": 12.5}
        child.set_attributes({**attributes, "items": ["a", "b"]})
        child.add_event("card.declined", {"code": 51})
        child.set_status(Status(StatusCode.ERROR, "declined"))
    provider.shutdown()
    return {
        "trace": format_trace_id(root.get_span_context().trace_id),
        "root": format_span_id(root.get_span_context().span_id),
        "child": format_span_id(child.get_span_context().span_id),
    }


def check_mapping(server, ids: dict[str, str], service: str) -> None:
    spans = {s["id"]: s for s in server.get_json(f"/api/v2/trace/{ids['trace']}")}
    root, child = spans[ids["root"]], spans[ids["child"]]
    assert root["kind"] == "SERVER" and root["name"] == "post /pay" and "parentId" not in root
    assert root["localEndpoint"] == {"serviceName": service}
    assert child["kind"] == "CLIENT" and child["parentId"] == ids["root"]
    assert child["remoteEndpoint"]["serviceName"] == "payments"
    tags = child["tags"]
    assert tags["otel.status_code"] == "ERROR" and tags["error"] == "declined"
    assert tags["otel.scope.name"] == "shop.checkout" and tags["otel.scope.version"] == "1.2.3"
    assert (tags["server.port"], tags["retry"], tags["amount"]) == ("8443", "true", "12.5")
    assert json.loads(tags["items"]) == ["a", "b"]
    [event] = child["annotations"]
    assert event["value"] == '"card.declined":{"code":51}'  # the spec's event-with-attributes form


def test_http_exporter_configured_by_environment_alone(tracebox, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tracebox.otlp_http_url)
    ids = emit(HttpExporter(), "env-http")
    check_mapping(tracebox, ids, "env-http")


def test_grpc_exporter_configured_by_environment_alone(tracebox, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://{tracebox.otlp_grpc_target}")
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    ids = emit(GrpcExporter(), "env-grpc")
    check_mapping(tracebox, ids, "env-grpc")


def test_main_port_serves_otlp_too(tracebox):
    ids = emit(HttpExporter(endpoint=tracebox.url + "/v1/traces"), "main-port")
    check_mapping(tracebox, ids, "main-port")


def otlp_json(trace_id: str, span_id: str, *, start: str | int) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}]},
                "scopeSpans": [
                    {
                        "scope": {"name": "hand"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "GET /x",
                                "kind": 2,
                                "startTimeUnixNano": start,
                                "endTimeUnixNano": "1700000000250000000",
                                "attributes": [{"key": "http.status_code", "value": {"intValue": "200"}}],
                                "unknownField": {"ignored": True},
                            }
                        ],
                    }
                ],
            }
        ]
    }


def as_protobuf(trace_id: str, span_id: str) -> bytes:
    """The span of ``otlp_json`` built with OTLP's own message classes."""
    attribute = common_pb2.KeyValue(key="http.status_code", value=common_pb2.AnyValue(int_value=200))
    span = trace_pb2.Span(
        trace_id=bytes.fromhex(trace_id),
        span_id=bytes.fromhex(span_id),
        name="GET /x",
        kind=trace_pb2.Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000,
        end_time_unix_nano=1_700_000_000_250_000_000,
        attributes=[attribute],
    )
    service = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="json-svc"))
    resource_spans = trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=[service]),
        scope_spans=[trace_pb2.ScopeSpans(scope=common_pb2.InstrumentationScope(name="hand"), spans=[span])],
    )
    return ExportTraceServiceRequest(resource_spans=[resource_spans]).SerializeToString()


def test_hand_written_json_lands_like_protobuf(tracebox):
    upper = ("5B8EFFF798038103D269B633813FC60C", "EEE19B7EC3C1B174")
    lower = ("5b8efff798038103d269b633813fc60d", "eee19b7ec3c1b174")
    response = tracebox.post("/v1/traces", json.dumps(otlp_json(*upper, start="1700000000000000000")))
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("application/json")
    assert json.loads(response.text) == {}  # an empty ExportTraceServiceResponse
    response = tracebox.post("/v1/traces", json.dumps(otlp_json(*lower, start=1700000000000000000)))
    assert response.status_code == 200
    proto_trace = "0123456789abcdef0123456789abcdef"
    response = tracebox.post(
        "/v1/traces", as_protobuf(proto_trace, lower[1]), content_type="application/x-protobuf"
    )
    assert response.status_code == 200
    assert ExportTraceServiceResponse.FromString(response.content) == ExportTraceServiceResponse()
    [from_upper] = tracebox.get_json(f"/api/v2/trace/{upper[0].lower()}")
    [from_lower] = tracebox.get_json(f"/api/v2/trace/{lower[0]}")
    [from_proto] = tracebox.get_json(f"/api/v2/trace/{proto_trace}")
    assert from_upper["id"] == upper[1].lower()
    for other in (from_lower, from_proto):
        assert {k: v for k, v in other.items() if k not in ("traceId", "id")} == {
            k: v for k, v in from_upper.items() if k not in ("traceId", "id")
        }
    assert from_proto["timestamp"] == 1_700_000_000_000_000 and from_proto["duration"] == 250_000
    assert from_proto["tags"]["http.status_code"] == "200"


def rpc_status(response) -> status_pb2.Status:
    return status_pb2.Status.FromString(response.content)


def test_bad_ids_are_a_partial_success_and_the_rest_is_kept(tracebox):
    good = otlp_json("5b8efff798038103d269b633813fc6aa", "eee19b7ec3c1b1aa", start="1700000000000000000")
    bad_span = dict(good["resourceSpans"][0]["scopeSpans"][0]["spans"][0], traceId="nothex", spanId="zz")
    good["resourceSpans"][0]["scopeSpans"][0]["spans"].append(bad_span)
    response = tracebox.post("/v1/traces", json.dumps(good))
    assert response.status_code == 200
    partial = json.loads(response.text)["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1 and "traceId" in partial["errorMessage"]
    assert len(tracebox.get_json("/api/v2/trace/5b8efff798038103d269b633813fc6aa")) == 1


def test_garbage_protobuf_is_400_with_a_status_and_stores_nothing(tracebox):
    before = tracebox.get_json("/metrics").get("zipkin_collector_spans_total{transport=otlp-http}", 0)
    response = tracebox.post("/v1/traces", b"\xff\xff\xff\x0f garbage", content_type="application/x-protobuf")
    assert response.status_code == 400
    status = rpc_status(response)
    assert status.code == 3 and status.message  # INVALID_ARGUMENT, naming the problem
    after = tracebox.get_json("/metrics").get("zipkin_collector_spans_total{transport=otlp-http}", 0)
    assert after == before


def test_bad_json_is_400_with_a_json_status(tracebox):
    response = tracebox.post("/v1/traces", '{"resourceSpans": 5}')
    assert response.status_code == 400
    body = json.loads(response.text)
    assert body["code"] == 3 and "resourceSpans" in body["message"]


def test_unsupported_content_type_is_415(tracebox):
    response = tracebox.post("/v1/traces", "x", content_type="text/csv")
    assert response.status_code == 415 and "text/csv" in rpc_status(response).message


def test_other_methods_are_405(tracebox):
    assert requests.get(tracebox.url + "/v1/traces", timeout=10).status_code == 405
    assert requests.put(tracebox.otlp_http_url + "/v1/traces", data=b"", timeout=10).status_code == 405


def test_size_limit_after_decompression_is_413(tmp_path):
    from tests.conftest import start_tracebox

    server = start_tracebox(tmp_path / "t.db", "--max-body-bytes", "50000")
    try:
        bomb = gzip.compress(b"\x0a" + b"\x00" * 1_000_000)
        response = server.post(
            "/v1/traces", bomb, content_type="application/x-protobuf", **{"Content-Encoding": "gzip"}
        )
        assert response.status_code == 413
        assert "after decompression" in rpc_status(response).message
    finally:
        server.stop()


@pytest.mark.parametrize("encoding", ["gzip", "plain"])
def test_gzip_and_plain_protobuf_from_the_exporter(tracebox, encoding):
    from opentelemetry.exporter.otlp.proto.http import Compression

    exporter = HttpExporter(
        endpoint=tracebox.otlp_http_url + "/v1/traces",
        compression=Compression.Gzip if encoding == "gzip" else Compression.NoCompression,
    )
    ids = emit(exporter, f"compressed-{encoding}")
    check_mapping(tracebox, ids, f"compressed-{encoding}")
