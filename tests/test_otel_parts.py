"""OTLP resources and scopes are stored once and come back whole on the trace page's read."""

from __future__ import annotations

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import format_trace_id

from tracebox.appliance.store import connect
from tracebox.appliance.store.views import trace_otel

RESOURCE = {"service.name": "parts-svc", "host.name": "box-1", "k8s.pod.name": "pod-" + "x" * 200}


def test_resources_stored_once_and_restored(fresh_tracebox):
    provider = TracerProvider(resource=Resource.create(RESOURCE))
    provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=fresh_tracebox.otlp_http_url + "/v1/traces"))
    )
    tracer = provider.get_tracer("parts.scope", "9.9")
    with tracer.start_as_current_span("root") as root:
        for i in range(50):
            with tracer.start_as_current_span(f"child {i}"):
                pass
    trace_id = format_trace_id(root.get_span_context().trace_id)
    provider.shutdown()
    assert len(fresh_tracebox.get_json(f"/api/v2/trace/{trace_id}")) == 51

    conn = connect(fresh_tracebox.db)
    try:
        # one resource and one scope row for all 51 spans, and no span repeats the resource
        assert conn.execute("SELECT count(*) FROM otel_parts").fetchall()[0][0] == 2
        blobs = [bytes(b) for (b,) in conn.execute("SELECT otel FROM spans WHERE trace_id = ?", (trace_id,))]
        assert len(blobs) == 51 and not any(b"k8s.pod.name" in b for b in blobs)
        extras = trace_otel(conn, trace_id)
    finally:
        conn.close()
    assert len(extras) == 51
    for extra in extras.values():
        assert extra["resource"]["attributes"]["k8s.pod.name"] == RESOURCE["k8s.pod.name"]
        assert extra["scope"]["name"] == "parts.scope" and extra["scope"]["version"] == "9.9"
        assert "resourceRef" not in extra and "scopeRef" not in extra


def test_stored_form_keeps_only_what_the_zipkin_span_does_not_say():
    """String attributes are their tags, microsecond times are the span's: the store keeps neither
    twice, and ``expand`` gives back exactly what the decoder produced."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
    from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

    from tracebox.appliance.codecs.otlp import decode_otlp_protobuf
    from tracebox.appliance.store.otel_parts import expand, stored_form

    attributes = [
        KeyValue(key="http.route", value=AnyValue(string_value="/orders")),
        KeyValue(key="http.status_code", value=AnyValue(int_value=200)),
        KeyValue(key="cache.hit", value=AnyValue(bool_value=False)),
    ]
    start = 1_700_000_000_000_000_000
    # span "a" at whole microseconds, span "b" with nanoseconds beyond them
    spans = [
        Span(
            trace_id=b"\x01" * 16,
            span_id=bytes([n + 2]) * 8,
            name=name,
            attributes=attributes,
            start_time_unix_nano=start + extra_ns,
            end_time_unix_nano=start + 5_000_000 + 3 * extra_ns,
        )
        for n, (name, extra_ns) in enumerate((("a", 0), ("b", 123)))
    ]
    request = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans)])])
    for decoded in decode_otlp_protobuf(request.SerializeToString()).spans:
        otel = decoded["otel"]
        stored = stored_form(otel, decoded)
        assert "http.route" not in stored.get("attributes", {})  # a tag says it
        assert stored["attributes"] == {"http.status_code": 200, "cache.hit": False}
        assert ("startTimeUnixNano" in stored) == (decoded["name"] == "b")  # only when finer than µs
        restored = dict(stored)
        expand(restored, decoded["tags"], decoded["timestamp"], decoded["duration"])
        assert restored == otel
