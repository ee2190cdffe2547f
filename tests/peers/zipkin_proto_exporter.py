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
lower-hex trace ids sent as a JSON list on stdout; exits 1 if the export failed.
"""

from __future__ import annotations

import argparse
import json
import sys

from opentelemetry.exporter.zipkin.proto.http import ZipkinExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode, format_trace_id


class _Recording(SpanExporter):
    """Forwards to the real exporter and remembers whether every export succeeded."""

    def __init__(self, inner: ZipkinExporter) -> None:
        self.inner = inner
        self.failed = False

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = self.inner.export(spans)
        self.failed |= result is not SpanExportResult.SUCCESS
        return result

    def shutdown(self) -> None:
        self.inner.shutdown()


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

    print(json.dumps(trace_ids))
    return 1 if exporter.failed else 0


if __name__ == "__main__":
    sys.exit(main())
