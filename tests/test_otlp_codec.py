"""OTLP decoding against spans made and encoded by the real OpenTelemetry SDK."""

from __future__ import annotations

import orjson
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans
from opentelemetry.proto.trace.v1.trace_pb2 import Span as PbSpan
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanLimits, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from tracebox.appliance.codecs.otlp import (
    decode_otlp_json,
    decode_otlp_protobuf,
    encode_retry_info,
    encode_rpc_status,
    export_response,
    status_body,
)
from tracebox.appliance.limits import MAX_TAG_VALUE_CHARS, MAX_TAGS_PER_SPAN
from tracebox.appliance.model import DecodeError


def _sdk_batch(resource: Resource, build, limits: SpanLimits | None = None) -> bytes:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=resource, span_limits=limits)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    build(provider.get_tracer("shop.instrumentation", "2.1.0"))
    return encode_spans(exporter.get_finished_spans()).SerializeToString()


def _by_name(spans):
    return {span["name"]: span for span in spans}


def test_sdk_spans_map_like_the_zipkin_exporter_spec():
    def build(tracer):
        with tracer.start_as_current_span("GET /cart", kind=SpanKind.SERVER) as server:
            server.set_attributes({"network.peer.address": "10.0.0.9", "network.peer.port": 40000})
            with tracer.start_as_current_span(
                "query",
                kind=SpanKind.CLIENT,
                attributes={
                    "peer.service": "Postgres",
                    "server.address": "db.internal",
                    "network.peer.address": "10.0.0.7",
                    "network.peer.port": 5432,
                    "db.rows": 3,
                    "cache.hit": False,
                    "ratio": 0.25,
                    "tables": ["orders", "items"],
                    "error": False,
                },
            ) as client:
                client.add_event("retry", {"attempt": 2}, timestamp=client.start_time + 5_000)
                client.add_event("done", timestamp=client.start_time + 9_000)
                client.set_status(Status(StatusCode.ERROR, "deadlock"))
            with tracer.start_as_current_span("fetch", kind=SpanKind.CLIENT) as fetch:
                fetch.set_attributes({"server.address": "api.example", "server.port": 8443})
            with tracer.start_as_current_span("render") as internal:
                internal.set_status(Status(StatusCode.OK))

    body = _sdk_batch(
        Resource({"service.name": "Checkout", "service.namespace": "shop", "host.name": "h1"}), build
    )
    batch = decode_otlp_protobuf(body)
    assert (batch.rejected, batch.error_message) == (0, "")
    spans = _by_name(batch.spans)
    assert set(spans) == {"get /cart", "query", "fetch", "render"}

    server, query, fetch, render = spans["get /cart"], spans["query"], spans["fetch"], spans["render"]
    assert server["kind"] == "SERVER"
    assert server["localEndpoint"] == {"serviceName": "checkout"}
    assert server["remoteEndpoint"] == {"ipv4": "10.0.0.9", "port": 40000}  # no service name on a SERVER span
    assert query["parentId"] == server["id"] and query["traceId"] == server["traceId"]
    assert len(query["traceId"]) == 32 and len(query["id"]) == 16

    assert query["kind"] == "CLIENT"
    assert query["remoteEndpoint"] == {"serviceName": "postgres", "ipv4": "10.0.0.7", "port": 5432}
    tags = query["tags"]
    assert tags["db.rows"] == "3"
    assert tags["cache.hit"] == "false"
    assert tags["ratio"] == "0.25"
    assert tags["tables"] == '["orders","items"]'
    assert tags["otel.status_code"] == "ERROR"
    assert tags["error"] == "deadlock"  # the boolean false error attribute gave way to the status
    assert tags["otel.scope.name"] == tags["otel.library.name"] == "shop.instrumentation"
    assert tags["otel.scope.version"] == tags["otel.library.version"] == "2.1.0"
    assert tags["service.namespace"] == "shop"
    assert "host.name" not in tags
    start = query["timestamp"]
    assert query["annotations"] == [
        {"timestamp": start + 5, "value": '"retry":{"attempt":2}'},
        {"timestamp": start + 9, "value": "done"},
    ]

    otel = query["otel"]
    assert otel["resource"]["attributes"]["host.name"] == "h1"
    assert otel["scope"] == {"name": "shop.instrumentation", "version": "2.1.0"}
    assert otel["attributes"]["db.rows"] == 3 and otel["attributes"]["cache.hit"] is False
    assert otel["attributes"]["tables"] == ["orders", "items"]
    assert otel["status"] == {"code": "ERROR", "message": "deadlock"}
    assert otel["events"][0]["name"] == "retry" and otel["events"][0]["attributes"] == {"attempt": 2}
    assert otel["events"][0]["timeUnixNano"] == otel["startTimeUnixNano"] + 5_000
    assert query["timestamp"] == otel["startTimeUnixNano"] // 1000

    assert fetch["remoteEndpoint"] == {"serviceName": "api.example", "port": 8443}
    assert "kind" not in render and render["otel"]["kind"] == "INTERNAL"
    assert "remoteEndpoint" not in render
    assert render["tags"]["otel.status_code"] == "OK" and "error" not in render["tags"]


def test_missing_service_name_dropped_counts_and_links():
    def build(tracer):
        with tracer.start_as_current_span("first") as first:
            context = first.get_span_context()
        link = Link(context, {"why": "retry-of"})
        with tracer.start_as_current_span("second", links=[link]) as second:
            second.set_attributes({f"a{i}": i for i in range(5)})
            for i in range(4):
                second.add_event(f"e{i}")

    limits = SpanLimits(max_span_attributes=2, max_events=1)
    batch = decode_otlp_protobuf(_sdk_batch(Resource({"team": "payments"}), build, limits))
    spans = _by_name(batch.spans)
    second = spans["second"]
    assert second["localEndpoint"] == {"serviceName": "unknown_service"}
    assert second["tags"]["otel.dropped_attributes_count"] == "3"
    assert second["tags"]["otel.dropped_events_count"] == "3"
    assert second["otel"]["links"] == [
        {
            "traceId": spans["first"]["traceId"],
            "spanId": spans["first"]["id"],
            "attributes": {"why": "retry-of"},
            "flags": 256,
        }
    ]


def _pb_request() -> ExportTraceServiceRequest:
    def kv(key, **value):
        return KeyValue(key=key, value=AnyValue(**value))

    span = PbSpan(
        trace_id=bytes.fromhex("5B8EFFF798038103D269B633813FC60C"),
        span_id=bytes.fromhex("EEE19B7EC3C1B174"),
        parent_span_id=bytes.fromhex("eee19b7ec3c1b173"),
        trace_state="vendor=abc",
        flags=1,
        name="Charge",
        kind=PbSpan.SPAN_KIND_PRODUCER,
        start_time_unix_nano=1_700_000_000_123_456_789,
        end_time_unix_nano=1_700_000_000_223_456_789,
        attributes=[
            kv("big", int_value=9_007_199_254_740_993),
            kv("ok", bool_value=True),
            kv("peer.service", string_value="queue"),
            kv("bin", bytes_value=b"\x00\x01"),
            kv("list", array_value=ArrayValue(values=[AnyValue(string_value="a"), AnyValue(int_value=1)])),
        ],
        events=[PbSpan.Event(time_unix_nano=1_700_000_000_200_000_000, name="sent")],
        status={"code": 2, "message": "declined"},
    )
    return ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource={"attributes": [kv("service.name", string_value="payments")]},
                scope_spans=[ScopeSpans(scope={"name": "pay"}, spans=[span])],
            )
        ]
    )


_HAND_WRITTEN_JSON = b"""{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "payments"}}]},
    "scopeSpans": [{
      "scope": {"name": "pay", "unknownField": 1},
      "spans": [{
        "traceId": "5B8EFFF798038103D269B633813FC60C",
        "spanId": "EEE19B7EC3C1B174",
        "parent_span_id": "eee19b7ec3c1b173",
        "traceState": "vendor=abc",
        "flags": 1,
        "name": "Charge",
        "kind": 4,
        "startTimeUnixNano": "1700000000123456789",
        "endTimeUnixNano": 1700000000223456789,
        "attributes": [
          {"key": "big", "value": {"intValue": "9007199254740993"}},
          {"key": "ok", "value": {"boolValue": true}},
          {"key": "peer.service", "value": {"stringValue": "queue"}},
          {"key": "bin", "value": {"bytesValue": "AAE="}},
          {"key": "list", "value": {"arrayValue": {"values": [{"stringValue": "a"}, {"intValue": 1}]}}}
        ],
        "events": [{"timeUnixNano": "1700000000200000000", "name": "sent"}],
        "status": {"code": "STATUS_CODE_ERROR", "message": "declined"},
        "somethingNew": {"ignored": true}
      }]
    }]
  }]
}"""


def test_hand_written_json_decodes_identically_to_protobuf():
    from_json = decode_otlp_json(_HAND_WRITTEN_JSON)
    from_pb = decode_otlp_protobuf(_pb_request().SerializeToString())
    assert from_json.rejected == from_pb.rejected == 0
    assert from_json.spans == from_pb.spans
    span = from_json.spans[0]
    assert span["traceId"] == "5b8efff798038103d269b633813fc60c"
    assert span["id"] == "eee19b7ec3c1b174" and span["parentId"] == "eee19b7ec3c1b173"
    assert span["kind"] == "PRODUCER" and span["name"] == "charge"
    assert span["timestamp"] == 1_700_000_000_123_456 and span["duration"] == 100_000
    assert span["remoteEndpoint"] == {"serviceName": "queue"}
    assert span["tags"]["big"] == "9007199254740993"
    assert span["tags"]["bin"] == "AAE="
    assert span["tags"]["list"] == '["a",1]'
    assert span["tags"]["error"] == "declined"
    assert span["otel"]["attributes"]["bin"] == {"bytesValue": "AAE="}
    assert span["otel"]["traceState"] == "vendor=abc" and span["otel"]["flags"] == 1


def _with_bad_ids(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    spans = request.resource_spans[0].scope_spans[0].spans
    good = spans[0]
    short = spans.add()
    short.CopyFrom(good)
    short.name, short.trace_id = "short", b"\x01\x02"
    zero = spans.add()
    zero.CopyFrom(good)
    zero.name, zero.span_id = "zero", bytes(8)
    return request


def test_bad_ids_are_rejected_and_counted_while_the_rest_is_kept_protobuf():
    batch = decode_otlp_protobuf(_with_bad_ids(_pb_request()).SerializeToString())
    assert [s["name"] for s in batch.spans] == ["charge"]
    assert batch.rejected == 2
    assert batch.error_message == (
        "rejected 2 span(s): span 'short': traceId should be 16 non-zero bytes (32 hex characters), "
        "got '0102' (and 1 more)"
    )


def test_a_service_name_over_the_limit_rejects_its_resources_spans_only():
    request = _pb_request()
    too_long = ResourceSpans()
    too_long.CopyFrom(request.resource_spans[0])
    too_long.resource.attributes[0].value.string_value = "s" * 5_000
    request.resource_spans.append(too_long)
    batch = decode_otlp_protobuf(request.SerializeToString())
    assert [s["localEndpoint"]["serviceName"] for s in batch.spans] == ["payments"]
    assert batch.rejected == 1 and "serviceName has 5000 characters" in batch.error_message


@pytest.mark.parametrize(
    ("spoil", "message"),
    [
        (
            lambda span, scope: setattr(span.attributes.add(key="k" * 1_025).value, "string_value", "v"),
            "tag key 'kkkk",
        ),
        (
            lambda span, scope: setattr(
                span.attributes.add(key="prompt").value, "string_value", "v" * (MAX_TAG_VALUE_CHARS + 1)
            ),
            "tag 'prompt' has a value of 1048577 characters",
        ),
        (
            lambda span, scope: span.attributes.add(key="list").value.array_value.values.extend(
                [AnyValue(string_value="v" * MAX_TAG_VALUE_CHARS)]
            ),
            "tag 'list' has a value of",
        ),
        (
            lambda span, scope: (
                setattr(span.status, "code", 2),
                setattr(span.status, "message", "m" * (MAX_TAG_VALUE_CHARS + 1)),
            ),
            "tag 'error' has a value of",
        ),
        (
            lambda span, scope: setattr(scope.scope, "name", "n" * (MAX_TAG_VALUE_CHARS + 1)),
            "otel.scope.name",
        ),
        (
            lambda span, scope: span.attributes.extend(
                KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(MAX_TAGS_PER_SPAN)
            ),
            "tags, more than the limit of 1024",
        ),
    ],
)
def test_tags_over_a_limit_reject_their_span_only(spoil, message):
    request = _pb_request()
    spoiled = ScopeSpans()
    spoiled.CopyFrom(request.resource_spans[0].scope_spans[0])
    spoiled.spans[0].name = "spoiled"
    spoil(spoiled.spans[0], spoiled)
    request.resource_spans[0].scope_spans.append(spoiled)
    batch = decode_otlp_protobuf(request.SerializeToString())
    assert [s["name"] for s in batch.spans] == ["charge"]
    assert batch.rejected == 1
    assert batch.error_message.startswith("rejected 1 span(s): span 'spoiled': ")
    assert message in batch.error_message


def test_bad_ids_are_rejected_and_counted_while_the_rest_is_kept_json():
    doc = orjson.loads(_HAND_WRITTEN_JSON)
    spans = doc["resourceSpans"][0]["scopeSpans"][0]["spans"]
    spans.append({**spans[0], "name": "not-hex", "spanId": "zzzzzzzzzzzzzzzz"})
    spans.append({**spans[0], "name": "missing"} | {"traceId": ""})
    batch = decode_otlp_json(orjson.dumps(doc))
    assert [s["name"] for s in batch.spans] == ["charge"]
    assert batch.rejected == 2
    assert "span 'not-hex': spanId should be hex, got 'zzzzzzzzzzzzzzzz'" in batch.error_message


@pytest.mark.parametrize(
    ("decoder", "body", "message"),
    [
        (decode_otlp_protobuf, b"\xff\xff\xff\xff", "Malformed OTLP protobuf ExportTraceServiceRequest"),
        (decode_otlp_json, b"{not json", "Malformed OTLP JSON"),
        (decode_otlp_json, b"[1, 2]", "Expected an OTLP ExportTraceServiceRequest JSON object"),
        (
            decode_otlp_json,
            b'{"resourceSpans": {"a": 1}}',
            "Malformed OTLP JSON: resourceSpans should be a list",
        ),
        (
            decode_otlp_json,
            b'{"resourceSpans": [{"scopeSpans": [3]}]}',
            "Malformed OTLP JSON: expected an object",
        ),
    ],
)
def test_garbage_bodies_raise_decode_error_naming_the_problem(decoder, body, message):
    with pytest.raises(DecodeError) as caught:
        decoder(body)
    assert str(caught.value).startswith(message)


def test_export_response_in_the_request_encoding():
    assert export_response("application/x-protobuf") == b""
    assert orjson.loads(export_response("application/json")) == {}
    parsed = ExportTraceServiceResponse.FromString(export_response("application/x-protobuf", 2, "bad ids"))
    assert (parsed.partial_success.rejected_spans, parsed.partial_success.error_message) == (2, "bad ids")
    as_json = orjson.loads(export_response("application/json; charset=utf-8", 2, "bad ids"))
    assert as_json == {"partialSuccess": {"rejectedSpans": "2", "errorMessage": "bad ids"}}


def test_status_bodies_and_retry_info_parse_with_googles_own_classes():
    status = status_pb2.Status.FromString(status_body("application/x-protobuf", 3, "no spans in body"))
    assert (status.code, status.message) == (3, "no spans in body")
    assert orjson.loads(status_body("application/json", 3, "bad")) == {"code": 3, "message": "bad"}

    retry = encode_retry_info(1.25)
    detailed = status_pb2.Status.FromString(
        encode_rpc_status(14, "busy", (("type.googleapis.com/google.rpc.RetryInfo", retry),))
    )
    info = error_details_pb2.RetryInfo()
    assert detailed.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 250_000_000)


def _edge_request() -> ExportTraceServiceRequest:
    """Spans whose fields the normalisation has to change: a zero high trace half, a parent equal to
    the span, an upper-case service, an IPv4-mapped IPv6 local address, repeated events."""
    request = _pb_request()
    resource_spans = request.resource_spans[0]
    resource_spans.resource.attributes[0].value.string_value = "Payments-API"
    span = resource_spans.scope_spans[0].spans[0]
    span.trace_id = bytes(8) + bytes.fromhex("d269b633813fc60c")
    span.parent_span_id = span.span_id
    span.attributes.add(key="network.local.address", value=AnyValue(string_value="::ffff:10.0.0.7"))
    span.attributes.add(key="network.local.port", value=AnyValue(int_value=8443))
    span.events.extend([PbSpan.Event(time_unix_nano=1_700_000_000_200_000_000, name="sent")] * 2)
    span.events.add(time_unix_nano=500, name="before the epoch's first microsecond")
    return request


def test_decoded_spans_are_already_normalised():
    """The decoder builds spans in their final form; ``normalize_span`` must find nothing to change."""
    from tracebox.appliance import demo
    from tracebox.appliance.model import normalize_span

    traffic = [span for trace in demo.generate_traces(30, seed=3) for span in trace]
    bodies = [demo.to_otlp(traffic).SerializeToString(), _edge_request().SerializeToString()]
    spans = [span for body in bodies for span in decode_otlp_protobuf(body).spans]
    spans += decode_otlp_json(demo.encode_otlp_json(traffic)).spans
    assert len(spans) == 2 * len(traffic) + 1
    for span in spans:
        assert normalize_span(span) == span
    edge = spans[len(traffic)]
    assert edge["traceId"] == "d269b633813fc60c" and "parentId" not in edge
    assert edge["localEndpoint"] == {"serviceName": "payments-api", "ipv4": "10.0.0.7", "port": 8443}
    assert [a["value"] for a in edge["annotations"]] == ["sent"]
