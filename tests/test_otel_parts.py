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
