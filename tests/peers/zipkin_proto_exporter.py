"""Peer: send spans through OpenTelemetry's Zipkin proto3-over-HTTP exporter.

``opentelemetry-exporter-zipkin-proto-http`` pins protobuf ~= 3.12, which cannot share an
environment with tracebox (protobuf >= 5), so this script runs under its own virtualenv holding
only the SDK and that exporter::

    python -m venv /tmp/zipkin-proto-venv
    /tmp/zipkin-proto-venv/bin/pip install opentelemetry-sdk opentelemetry-exporter-zipkin-proto-http
    /tmp/zipkin-proto-venv/bin/python tests/peers/zipkin_proto_exporter.py \\
        --endpoint http://127.0.0.1:9411/api/v2/spans --trace-count 3

Each trace is a SERVER root with a CLIENT child (an attribute of each type, an event, an error
status), so the receiver sees kinds, tags, annotations, endpoints and parent ids. Prints the
lower-hex trace ids and a description of every span sent as JSON on stdout; exits 1 if the export
failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id


class _Recording(SpanExporter):
    """Forwards to the real exporter, remembering each span sent and whether every export succeeded."""

    def __init__(self, inner: ZipkinExporter) -> None:
        self.inner = inner
        self.failed = False
        self.sent: list[dict] = []

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = self.inner.export(spans)
        self.failed |= result is not SpanExportResult.SUCCESS
        self.sent.extend(_describe(span) for span in spans)
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


def _describe(span) -> dict:  # type: ignore[no-untyped-def]
    """What the SDK sent, in the terms a Zipkin span is checked against."""
    parent = span.parent
    return {
        "traceId": format_trace_id(span.context.trace_id),
        "id": format_span_id(span.context.span_id),
        "parentId": format_span_id(parent.span_id) if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "timestamp": span.start_time // 1000,
        "duration": (span.end_time - span.start_time) // 1000,
        "attributes": dict(span.attributes),
        "events": [event.name for event in span.events],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", required=True, help="e.g. http://127.0.0.1:9411/api/v2/spans")
    parser.add_argument("--trace-count", type=int, default=1)
    parser.add_argument("--service", default="zipkin-proto-peer")
    args = parser.parse_args()

    exporter = _Recording(
        ZipkinExporter(endpoint=args.endpoint, local_node_ipv4="127.0.0.1", local_node_port=8080)
    )
    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("tracebox.peers.zipkin_proto")

    trace_ids = []
    for index in range(args.trace_count):
        with tracer.start_as_current_span("GET /orders", kind=SpanKind.SERVER) as root:
            root.set_attributes({"http.method": "GET", "http.status_code": 200, "peer.index": index})
            with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
                child.set_attributes({"db.system": "sqlite", "db.rows": 3.5, "db.cached": False})
                child.add_event("query sent")
                child.set_status(Status(StatusCode.ERROR, "timeout"))
        trace_ids.append(format_trace_id(root.get_span_context().trace_id))
    provider.shutdown()

    print(json.dumps({"traceIds": trace_ids, "spans": exporter.sent}))
    return 1 if exporter.failed else 0


if __name__ == "__main__":
    sys.exit(main())
