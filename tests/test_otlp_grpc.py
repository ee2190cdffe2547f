"""OTLP/gRPC against the real OpenTelemetry gRPC exporter and raw grpc calls."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Status, StatusCode

from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.otlp_grpc import SERVICE, start_grpc_server
from tracebox.appliance.prepare import DECODERS, Prepared
from tracebox.appliance.store.rows import Batch


class Recorder:
    """A test ``accept``: decodes with the real decoder (garbage raises there, as in the server),
    records the spans, then raises the queued failures."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls: list[tuple[float, list, str]] = []

    async def __call__(self, wire, body, transport):
        decoded = DECODERS[wire](body)
        self.calls.append((time.monotonic(), decoded.spans, transport))
        if self.failures:
            raise self.failures.pop(0)
        return Prepared(
            Batch(), len(decoded.spans), rejected=decoded.rejected, error_message=decoded.error_message
        )

    @property
    def spans(self):
        """The spans of the last call, the one that was kept."""
        return self.calls[-1][1]


def _finished_spans():
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "frontend"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("web", "1.0")
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER) as root:
        with tracer.start_as_current_span(
            "charge", kind=SpanKind.CLIENT, attributes={"peer.service": "payments", "amount": 12.5}
        ) as child:
            child.add_event("sent")
            child.set_status(Status(StatusCode.ERROR, "card declined"))
        root.set_attribute("http.response.status_code", 502)
    return memory.get_finished_spans()


def _export_with_sdk(port: int, compression: grpc.Compression | None = None) -> SpanExportResult:
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{port}", insecure=True, compression=compression, timeout=10
    )
    try:
        return exporter.export(_finished_spans())
    finally:
        exporter.shutdown()


async def _serve(accept, scenario, **options):
    server = await start_grpc_server("127.0.0.1", 0, accept, **options)
    try:
        return await scenario(server.port)
    finally:
        await server.stop(None)


async def _raw_export(port: int, body: bytes):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        export = channel.unary_unary(f"/{SERVICE}/Export")
        return await export(body, timeout=5)


@pytest.mark.parametrize("compression", [None, grpc.Compression.Gzip])
def test_real_sdk_exporter_delivers_mapped_spans(compression):
    recorder = Recorder()

    async def scenario(port):
        return await asyncio.to_thread(_export_with_sdk, port, compression)

    assert asyncio.run(_serve(recorder, scenario)) == SpanExportResult.SUCCESS
    assert [transport for _, _, transport in recorder.calls] == ["otlp-grpc"]
    spans = {span["name"]: span for span in recorder.spans}
    charge, checkout = spans["charge"], spans["checkout"]
    assert charge["kind"] == "CLIENT" and checkout["kind"] == "SERVER"
    assert charge["parentId"] == checkout["id"]
    assert charge["localEndpoint"] == {"serviceName": "frontend"}
    assert charge["remoteEndpoint"] == {"serviceName": "payments"}
    assert charge["tags"]["otel.status_code"] == "ERROR" and charge["tags"]["error"] == "card declined"
    assert charge["tags"]["amount"] == "12.5" and charge["otel"]["attributes"]["amount"] == 12.5
    assert [a["value"] for a in charge["annotations"]] == ["sent"]
    assert checkout["tags"]["http.response.status_code"] == "502"


def test_overload_answers_unavailable_with_a_retry_hint_the_exporter_honours():
    recorder = Recorder(Overloaded(retry_after=0.1))

    async def scenario(port):
        return await asyncio.to_thread(_export_with_sdk, port)

    assert asyncio.run(_serve(recorder, scenario)) == SpanExportResult.SUCCESS
    assert len(recorder.calls) == 2
    waited = recorder.calls[1][0] - recorder.calls[0][0]
    assert 0.09 <= waited < 0.7  # without the hint the exporter's own first backoff is 0.8 to 1.2 s
    assert len(recorder.spans) == 2


@pytest.mark.parametrize(
    ("failure", "retry_after"),
    [(Overloaded(retry_after=2.5), 2.5), (StoreUnavailable("disk full", retry_after=5.0), 5.0)],
)
def test_unavailable_carries_rich_status_details(failure, retry_after):
    async def scenario(port):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw_export(port, _request().SerializeToString())
        return caught.value

    error = asyncio.run(_serve(Recorder(failure), scenario))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details() == str(failure)
    trailers = dict(error.trailing_metadata())
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    assert (status.code, status.message) == (grpc.StatusCode.UNAVAILABLE.value[0], str(failure))
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    assert info.retry_delay.ToTimedelta().total_seconds() == retry_after
    assert error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]) == info


def test_garbage_is_invalid_argument_and_nothing_is_accepted():
    recorder = Recorder()

    async def scenario(port):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw_export(port, b"\xff\xff\xff\xff")
        return caught.value

    error = asyncio.run(_serve(recorder, scenario))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("Malformed OTLP protobuf ExportTraceServiceRequest")
    assert recorder.calls == []


def _request(*spans: PbSpan) -> ExportTraceServiceRequest:
    good = PbSpan(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="good", start_time_unix_nano=10**18)
    return ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[good, *spans])])]
    )


def test_bad_ids_come_back_as_partial_success_and_the_good_spans_are_accepted():
    recorder = Recorder()
    bad = PbSpan(trace_id=b"\x01" * 16, span_id=b"\x03" * 4, name="bad")

    async def scenario(port):
        return await _raw_export(port, _request(bad).SerializeToString())

    response = ExportTraceServiceResponse.FromString(asyncio.run(_serve(recorder, scenario)))
    assert response.partial_success.rejected_spans == 1
    assert "span 'bad': spanId should be 8 non-zero bytes" in response.partial_success.error_message
    assert [span["name"] for span in recorder.spans] == ["good"]


def test_message_size_limit_is_configurable():
    recorder = Recorder()
    big = PbSpan(trace_id=b"\x01" * 16, span_id=b"\x04" * 8, name="x" * 4096)

    async def scenario(port):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _raw_export(port, _request(big).SerializeToString())
        return caught.value

    error = asyncio.run(_serve(recorder, scenario, max_message_bytes=1024))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert recorder.calls == []
