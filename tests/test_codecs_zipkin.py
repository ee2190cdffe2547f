"""Zipkin v1 JSON and proto3 codecs: v1->v2 conversion rules, proto round trips, bad input, and
peers (py_zipkin's own encoders) decoded field by field."""

from __future__ import annotations

import contextlib
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from tracebox.appliance.codecs.zipkin_json import decode_v2
from tracebox.appliance.codecs.zipkin_proto import _SCHEMA, ListOfSpans, decode_proto, encode_proto
from tracebox.appliance.codecs.zipkin_v1 import decode_v1
from tracebox.appliance.model import DecodeError, SpanError

SPEC = Path("/work/shared/spec/zipkin.proto")
FRONTEND = {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080}
BACKEND = {"serviceName": "backend", "ipv4": "10.0.0.2", "port": 9000}
KAFKA = {"serviceName": "kafka", "ipv4": "10.0.0.9", "port": 9092}
EXPECTED_IDS = {"traceId": "86154a4ba6e91385", "parentId": "86154a4ba6e91385", "id": "4d1e00c0db9010db"}


def v1(**fields: Any) -> list[dict[str, Any]]:
    span = {**EXPECTED_IDS, "name": "get", **fields}
    return decode_v1(orjson.dumps([span]))


def ann(timestamp: int, value: str, endpoint: dict[str, Any] | None = FRONTEND) -> dict[str, Any]:
    return {"timestamp": timestamp, "value": value, "endpoint": endpoint}


def bann(key: str, value: Any, endpoint: dict[str, Any] | None = FRONTEND) -> dict[str, Any]:
    return {"key": key, "value": value, "endpoint": endpoint}


# --- v1 -> v2 conversion --------------------------------------------------------------------


def test_v1_client_and_server_sides_split_into_two_spans() -> None:
    spans = v1(
        timestamp=100,
        duration=50,
        annotations=[ann(100, "cs"), ann(110, "sr", BACKEND), ann(140, "ss", BACKEND), ann(150, "cr")],
        binaryAnnotations=[bann("sa", True, BACKEND), bann("ca", True, FRONTEND)],
    )
    assert spans == [
        {**EXPECTED_IDS, "kind": "CLIENT", "name": "get", "timestamp": 100, "duration": 50}
        | {"localEndpoint": FRONTEND, "remoteEndpoint": BACKEND},
        {**EXPECTED_IDS, "kind": "SERVER", "name": "get", "timestamp": 110, "duration": 30}
        | {"localEndpoint": BACKEND, "remoteEndpoint": FRONTEND, "shared": True},
    ]


def test_v1_loopback_rpc_still_splits() -> None:
    spans = v1(annotations=[ann(100, "cs"), ann(110, "sr"), ann(140, "ss"), ann(150, "cr")])
    assert [(s["kind"], s["timestamp"], s["duration"], s.get("shared")) for s in spans] == [
        ("CLIENT", 100, 50, None),
        ("SERVER", 110, 30, True),
    ]
    assert all(s["localEndpoint"] == FRONTEND for s in spans)


def test_v1_one_way_rpc_has_no_client_duration() -> None:
    client, server = v1(annotations=[ann(100, "cs"), ann(110, "sr", BACKEND)])
    assert (client["kind"], client["timestamp"]) == ("CLIENT", 100)
    assert "duration" not in client
    assert (server["kind"], server["timestamp"], server["shared"]) == ("SERVER", 110, True)


def test_v1_client_only_span_takes_span_timestamp_and_sa() -> None:
    [span] = v1(
        timestamp=100,
        duration=60,
        annotations=[ann(101, "cs"), ann(150, "cr"), ann(120, "retry")],
        binaryAnnotations=[bann("sa", True, BACKEND), bann("http.path", "/api")],
    )
    assert span == {
        **EXPECTED_IDS,
        "kind": "CLIENT",
        "name": "get",
        "timestamp": 100,  # the span's own timestamp and duration win over cs/cr
        "duration": 60,
        "localEndpoint": FRONTEND,
        "remoteEndpoint": BACKEND,
        "annotations": [{"timestamp": 120, "value": "retry"}],
        "tags": {"http.path": "/api"},
    }


def test_v1_client_only_without_span_timestamp_uses_annotations() -> None:
    [span] = v1(annotations=[ann(101, "cs"), ann(150, "cr")])
    assert (span["kind"], span["timestamp"], span["duration"]) == ("CLIENT", 101, 49)
    assert "shared" not in span


def test_v1_server_only_without_timestamp_is_shared() -> None:
    [span] = v1(
        annotations=[ann(110, "sr", BACKEND), ann(140, "ss", BACKEND)],
        binaryAnnotations=[bann("ca", True, FRONTEND)],
    )
    assert span == {
        **EXPECTED_IDS,
        "kind": "SERVER",
        "name": "get",
        "timestamp": 110,
        "duration": 30,
        "localEndpoint": BACKEND,
        "remoteEndpoint": FRONTEND,
        "shared": True,
    }


def test_v1_server_only_with_its_own_timestamp_is_not_shared() -> None:
    [span] = v1(timestamp=110, duration=30, annotations=[ann(110, "sr", BACKEND), ann(140, "ss", BACKEND)])
    assert (span["kind"], span["timestamp"], span["duration"]) == ("SERVER", 110, 30)
    assert "shared" not in span


def test_v1_missing_start_annotation_is_rebuilt_from_span_timestamp() -> None:
    [span] = v1(timestamp=100, duration=50, annotations=[ann(150, "cr")])
    assert (span["kind"], span["timestamp"], span["duration"]) == ("CLIENT", 100, 50)
    assert "annotations" not in span


def test_v1_incomplete_rpc_keeps_end_annotation() -> None:
    [span] = v1(annotations=[ann(150, "cr")])
    assert span["kind"] == "CLIENT"
    assert "timestamp" not in span
    assert span["annotations"] == [{"timestamp": 150, "value": "cr"}]


def test_v1_core_annotation_without_endpoint_is_plain_annotation() -> None:
    [span] = v1(annotations=[ann(100, "cs", None), ann(150, "cr", None)])
    assert "kind" not in span
    assert "localEndpoint" not in span
    assert span["annotations"] == [{"timestamp": 100, "value": "cs"}, {"timestamp": 150, "value": "cr"}]


def test_v1_producer_ms_ws_and_ma() -> None:
    [span] = v1(annotations=[ann(100, "ms"), ann(120, "ws")], binaryAnnotations=[bann("ma", True, KAFKA)])
    assert span == {
        **EXPECTED_IDS,
        "kind": "PRODUCER",
        "name": "get",
        "timestamp": 100,
        "duration": 20,
        "localEndpoint": FRONTEND,
        "remoteEndpoint": KAFKA,
    }


def test_v1_consumer_wr_mr() -> None:
    [span] = v1(annotations=[ann(200, "wr", BACKEND), ann(230, "mr", BACKEND)])
    assert (span["kind"], span["timestamp"], span["duration"]) == ("CONSUMER", 200, 30)


def test_v1_shared_messaging_span_splits_and_both_get_broker() -> None:
    producer, consumer = v1(
        annotations=[ann(100, "ms"), ann(300, "mr", BACKEND)], binaryAnnotations=[bann("ma", True, KAFKA)]
    )
    assert (producer["kind"], producer["timestamp"], producer.get("duration")) == ("PRODUCER", 100, None)
    assert (consumer["kind"], consumer["timestamp"], consumer["shared"]) == ("CONSUMER", 300, True)
    assert producer["remoteEndpoint"] == consumer["remoteEndpoint"] == KAFKA


def test_v1_wire_annotations_without_messaging_stay_annotations() -> None:
    [span] = v1(annotations=[ann(100, "ws"), ann(120, "wr")])
    assert "kind" not in span
    assert span["annotations"] == [{"timestamp": 100, "value": "ws"}, {"timestamp": 120, "value": "wr"}]


def test_v1_empty_lc_gives_local_endpoint_without_tag() -> None:
    [span] = v1(timestamp=100, duration=5, binaryAnnotations=[bann("lc", "", BACKEND)])
    assert span["localEndpoint"] == BACKEND
    assert (span["timestamp"], span["duration"]) == (100, 5)
    assert "tags" not in span
    [named] = v1(binaryAnnotations=[bann("lc", "cron", BACKEND)])
    assert (named["localEndpoint"], named["tags"]) == (BACKEND, {"lc": "cron"})


def test_v1_addresses_without_core_annotations() -> None:
    [server] = v1(binaryAnnotations=[bann("ca", True, FRONTEND)])
    assert (server["kind"], server["remoteEndpoint"]) == ("SERVER", FRONTEND)
    assert "localEndpoint" not in server
    [remote] = v1(binaryAnnotations=[bann("sa", True, BACKEND)])
    assert "kind" not in remote
    assert remote["remoteEndpoint"] == BACKEND
    [both] = v1(binaryAnnotations=[bann("ca", True, FRONTEND), bann("sa", True, BACKEND)])
    assert (both["localEndpoint"], both["remoteEndpoint"]) == (FRONTEND, BACKEND)
    assert "kind" not in both


def test_v1_finagle_ca_with_server_service_name_loses_it() -> None:
    client_socket = {"serviceName": "backend", "ipv4": "10.0.0.1", "port": 51234}
    [span] = v1(
        annotations=[ann(110, "sr", BACKEND), ann(140, "ss", BACKEND)],
        binaryAnnotations=[bann("ca", True, client_socket)],
    )
    assert span["remoteEndpoint"] == {"ipv4": "10.0.0.1", "port": 51234}


def test_v1_binary_annotation_types() -> None:
    [span] = v1(
        annotations=[ann(100, "cs"), ann(150, "cr")],
        binaryAnnotations=[
            bann("str", "text"),
            bann("flag", True),
            bann("off", False),
            bann("count", 3),
            bann("ratio", 1.5),
            bann("nothing", None),
            bann("object", {"a": 1}),
            bann("sa", False, BACKEND),  # an address must be true: dropped
        ],
    )
    assert span["tags"] == {"str": "text", "flag": "true", "off": "false", "count": "3", "ratio": "1.5"}
    assert "remoteEndpoint" not in span


def test_v1_address_marker_accepted_leniently_as_string() -> None:
    [span] = v1(annotations=[ann(100, "cs"), ann(150, "cr")], binaryAnnotations=[bann("sa", "1", BACKEND)])
    assert span["remoteEndpoint"] == BACKEND
    assert "tags" not in span


def test_v1_tag_from_other_host_lands_on_that_hosts_span() -> None:
    client, server = v1(
        annotations=[ann(100, "cs"), ann(110, "sr", BACKEND), ann(140, "ss", BACKEND), ann(150, "cr")],
        binaryAnnotations=[bann("db", "users", BACKEND)],
    )
    assert "tags" not in client
    assert server["tags"] == {"db": "users"}


def test_v1_missing_timestamps_and_endpoints() -> None:
    [span] = v1(annotations=[ann(100, "custom", None)], binaryAnnotations=[bann("k", "v", None)])
    assert span == {
        **EXPECTED_IDS,
        "name": "get",
        "annotations": [{"timestamp": 100, "value": "custom"}],
        "tags": {"k": "v"},
    }
    [bare] = v1()
    assert bare == {**EXPECTED_IDS, "name": "get"}


def test_v1_debug_and_128_bit_trace_id() -> None:
    [span] = v1(debug=True, traceId="463ac35c9f6413ad48485a3953bb6124")
    assert span["debug"] is True
    assert span["traceId"] == "463ac35c9f6413ad48485a3953bb6124"


def test_v1_rejects_non_list_and_malformed_json() -> None:
    with pytest.raises(DecodeError, match="Expected a JSON_V1 encoded list"):
        decode_v1(b'{"traceId": "1"}')
    with pytest.raises(DecodeError, match=r"Malformed reading List<Span> from json"):
        decode_v1(b"[{")
    assert decode_v1(b"[]") == []


def test_v1_rejects_bad_spans() -> None:
    with pytest.raises(SpanError, match="Incomplete annotation"):
        v1(annotations=[{"value": "cs", "endpoint": FRONTEND}])
    with pytest.raises(SpanError, match="No key"):
        v1(binaryAnnotations=[{"value": "x"}])
    with pytest.raises(SpanError, match="id is all zeros"):
        v1(id="0000000000000000")
    with pytest.raises(SpanError, match="timestamp"):
        v1(timestamp="yesterday")


# --- proto3 -------------------------------------------------------------------------------------

FULL_SPAN = {
    "traceId": "463ac35c9f6413ad48485a3953bb6124",
    "parentId": "0000000000000001",
    "id": "4d1e00c0db9010db",
    "kind": "SERVER",
    "name": "get /api",
    "timestamp": 1_700_000_000_000_123,
    "duration": 207_000,
    "localEndpoint": {"serviceName": "backend", "ipv4": "10.0.0.2", "ipv6": "2001:db8::c001", "port": 9000},
    "remoteEndpoint": {"serviceName": "frontend", "ipv6": "2001:db8::1", "port": 51234},
    "annotations": [
        {"timestamp": 1_700_000_000_000_200, "value": "ws"},
        {"timestamp": 1_700_000_000_001_000, "value": "wr"},
    ],
    "tags": {"http.path": "/api", "error": ""},
    "debug": True,
    "shared": True,
}


def test_proto_round_trips_every_field() -> None:
    local = {**FULL_SPAN, "traceId": "0000000000000abc", "kind": "PRODUCER", "name": "send"}
    for field in ("parentId", "localEndpoint", "remoteEndpoint", "annotations", "tags", "debug", "shared"):
        del local[field]
    assert decode_proto(encode_proto([FULL_SPAN, local])) == [FULL_SPAN, local]


def test_proto_kinds_round_trip() -> None:
    spans = [{**FULL_SPAN, "kind": kind} for kind in ("CLIENT", "SERVER", "PRODUCER", "CONSUMER")]
    spans[0].pop("shared")  # never on a client span
    assert decode_proto(encode_proto(spans)) == spans


def test_proto_zero_and_empty_fields_are_absent() -> None:
    message = ListOfSpans()
    span = message.spans.add(trace_id=bytes(8) + bytes.fromhex("0000000000000001"), id=b"\x00" * 7 + b"\x02")
    span.parent_id = bytes(8)
    span.kind = 0
    span.name = ""
    span.local_endpoint.service_name = ""
    span.remote_endpoint.ipv4 = b"\x01\x02"  # not an address: dropped
    span.annotations.add(timestamp=0, value="no time")
    span.annotations.add(timestamp=5, value="")
    span.tags[""] = "no key"
    assert decode_proto(message.SerializeToString()) == [
        {"traceId": "0000000000000001", "id": "0000000000000002"}
    ]


def test_proto_times_past_java_long_range_are_absent() -> None:
    message = ListOfSpans()
    message.spans.add(trace_id=b"\x01" * 8, id=b"\x02" * 8, timestamp=2**63, duration=2**64 - 1)
    assert decode_proto(message.SerializeToString()) == [{"traceId": "01" * 8, "id": "02" * 8}]


def test_proto_short_ids_are_padded_and_long_ones_refused() -> None:
    message = ListOfSpans()
    message.spans.add(trace_id=b"\x01\x02", id=b"\x03")
    assert decode_proto(message.SerializeToString()) == [
        {"traceId": "0000000000000102", "id": "0000000000000003"}
    ]
    message.spans.add(trace_id=b"\x01", id=bytes(range(1, 10)))
    with pytest.raises(SpanError, match=r"id should be at most 8 bytes, got 9 in span 1"):
        decode_proto(message.SerializeToString())


def test_proto_ipv4_mapped_address_reads_as_ipv4() -> None:
    message = ListOfSpans()
    span = message.spans.add(trace_id=b"\x01" * 8, id=b"\x02" * 8)
    span.local_endpoint.ipv6 = bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 7])
    assert decode_proto(message.SerializeToString())[0]["localEndpoint"] == {"ipv4": "10.0.0.7"}


def test_proto_unknown_fields_and_empty_body() -> None:
    body = encode_proto([FULL_SPAN]) + b"\x10\x07" + b"\x1a\x02hi"  # fields 2 and 3 of ListOfSpans
    assert decode_proto(body) == [FULL_SPAN]
    assert decode_proto(b"") == []


def test_proto_every_truncation_is_a_decode_error() -> None:
    body = encode_proto([FULL_SPAN, FULL_SPAN])
    boundary = len(body) // 2
    for cut in range(1, len(body)):
        if cut == boundary:
            assert decode_proto(body[:cut]) == [FULL_SPAN]
            continue
        with pytest.raises(DecodeError, match=r"^Truncated protobuf: ") as caught:
            decode_proto(body[:cut])
        assert type(caught.value) is DecodeError


@pytest.mark.parametrize(
    "body",
    [
        b"\x0a\x03\x0a\x05\x01",  # a nested length running past its span
        b"\x0f",  # wire type 7
        b"\x00\x01",  # field number 0
        b"\x0a\x04\x2a\x02\xff\xfe",  # name is not UTF-8
        b"\x08" + b"\xff" * 11,  # varint longer than 10 bytes
    ],
)
def test_proto_malformed_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(DecodeError, match=r"^(Malformed|Truncated) protobuf: "):
        decode_proto(body)


def test_proto_random_garbage_only_raises_decode_error() -> None:
    rng = random.Random(7)
    valid = encode_proto([FULL_SPAN])
    for _ in range(2000):
        body = bytearray(valid)
        for _ in range(rng.randint(1, 4)):
            body[rng.randrange(len(body))] = rng.randrange(256)
        with contextlib.suppress(DecodeError):  # anything else fails the test
            decode_proto(bytes(body))


def test_proto_schema_matches_the_spec(tmp_path: Path) -> None:
    protoc = pytest.importorskip("grpc_tools.protoc")
    from google.protobuf import descriptor_pb2

    out = tmp_path / "zipkin.pb"
    assert protoc.main(["protoc", f"-I{SPEC.parent}", f"--descriptor_set_out={out}", SPEC.name]) == 0
    [spec] = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    from_spec = {
        m.name: [
            (f.name, f.number, f.type, f.type_name or None, f.label == f.LABEL_REPEATED) for f in m.field
        ]
        for m in spec.message_type
        if m.field
    }
    assert from_spec == _SCHEMA


# --- peers: py_zipkin's own encoders ------------------------------------------------------------


def _py_zipkin_spans() -> tuple[list[Any], list[dict[str, Any]]]:
    """py_zipkin spans and the normalised v2 dicts they stand for."""
    from py_zipkin.encoding import Endpoint, Span
    from py_zipkin.encoding._types import Kind

    front = Endpoint(service_name="Frontend", ipv4="10.0.0.1", ipv6=None, port=8080)
    back = Endpoint(service_name="backend", ipv4=None, ipv6="2001:db8::2", port=9000)
    start, ids = (
        1_700_000_000.25,
        {"trace_id": "463ac35c9f6413ad48485a3953bb6124", "parent_id": "0000000000000001"},
    )
    spans = [
        Span(
            **ids,
            name="GET /api",
            span_id="000000000000000a",
            kind=Kind.CLIENT,
            timestamp=start,
            duration=0.5,
            local_endpoint=front,
            remote_endpoint=back,
            annotations={"retry": start + 0.125},
            tags={"http.path": "/api", "error": "boom"},
        ),
        Span(
            **ids,
            name="GET /api",
            span_id="000000000000000a",
            kind=Kind.SERVER,
            timestamp=start + 0.0625,
            duration=0.25,
            local_endpoint=back,
            remote_endpoint=front,
            shared=True,
        ),
        Span(
            **ids,
            name="work",
            span_id="000000000000000b",
            kind=Kind.LOCAL,
            timestamp=start + 0.1,
            duration=0.015625,
            local_endpoint=back,
            tags={"k": "v"},
        ),
    ]
    common = {"traceId": "463ac35c9f6413ad48485a3953bb6124", "parentId": "0000000000000001"}
    front_v2 = {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 8080}
    back_v2 = {"serviceName": "backend", "ipv6": "2001:db8::2", "port": 9000}
    micros = int(start * 1_000_000)
    expected = [
        {
            **common,
            "id": "000000000000000a",
            "kind": "CLIENT",
            "name": "get /api",
            "timestamp": micros,
            "duration": 500_000,
            "localEndpoint": front_v2,
            "remoteEndpoint": back_v2,
            "annotations": [{"timestamp": int((start + 0.125) * 1_000_000), "value": "retry"}],
            "tags": {"http.path": "/api", "error": "boom"},
        },
        {
            **common,
            "id": "000000000000000a",
            "kind": "SERVER",
            "name": "get /api",
            "timestamp": int((start + 0.0625) * 1_000_000),
            "duration": 250_000,
            "localEndpoint": back_v2,
            "remoteEndpoint": front_v2,
            "shared": True,
        },
        {
            **common,
            "id": "000000000000000b",
            "name": "work",
            "timestamp": int((start + 0.1) * 1_000_000),
            "duration": 15_625,
            "localEndpoint": back_v2,
            "tags": {"k": "v"},
        },
    ]
    return spans, expected


def _encode_with_py_zipkin(encoding_name: str) -> tuple[bytes, list[dict[str, Any]]]:
    from py_zipkin.encoding import Encoding, get_encoder

    spans, expected = _py_zipkin_spans()
    encoder = get_encoder(Encoding[encoding_name])
    body = encoder.encode_queue([encoder.encode_span(span) for span in spans])
    return (body.encode() if isinstance(body, str) else body), expected


@pytest.mark.parametrize(("encoding", "decode"), [("V2_JSON", decode_v2), ("V2_PROTO3", decode_proto)])
def test_peer_py_zipkin_v2(encoding: str, decode: Any) -> None:
    body, expected = _encode_with_py_zipkin(encoding)
    decoded = decode(body)
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected, strict=True):
        for key in sorted(set(got) | set(want)):
            assert got.get(key) == want.get(key), key


def test_peer_py_zipkin_v1() -> None:
    body, expected = _encode_with_py_zipkin("V1_JSON")
    decoded = decode_v1(body)
    # v1 carries no duration for the shared server side: it comes back from sr/ss instead
    assert len(decoded) == len(expected)
    for got, want in zip(decoded, expected, strict=True):
        for key in sorted(set(got) | set(want)):
            assert got.get(key) == want.get(key), key


def test_py_zipkin_protobuf_coexists_with_our_schema() -> None:
    """Both define zipkin.proto3.Span; ours lives in a private pool so both import in one process."""
    code = (
        "from py_zipkin.encoding.protobuf import zipkin_pb2\n"
        "from tracebox.appliance.codecs import zipkin_proto\n"
        "assert zipkin_proto.ListOfSpans is not zipkin_pb2.ListOfSpans\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# --- remembered ids and names -----------------------------------------------------------------


def test_remembered_trace_ids_and_names_normalise_as_when_first_seen() -> None:
    from tracebox.appliance import model

    def decoded(trace_id: str, name: str) -> tuple[str, str]:
        (span,) = decode_v2(orjson.dumps([{"traceId": trace_id, "id": "1", "name": name}]))
        return span["traceId"], span["name"]

    assert decoded("00000000000000004D1E00C0DB9010DB", "GET /Cart") == ("4d1e00c0db9010db", "get /cart")
    # seen again, and again after the memory was emptied by more distinct ids than it keeps
    assert decoded("00000000000000004D1E00C0DB9010DB", "GET /Cart") == ("4d1e00c0db9010db", "get /cart")
    for i in range(model.RECENT_SIZE + 10):
        assert model.normalize_trace_id(f"{i:x}") == f"{i:016x}"
    assert decoded("00000000000000004D1E00C0DB9010DB", "GET /Cart") == ("4d1e00c0db9010db", "get /cart")
    # what was refused is refused again: only valid input is remembered
    for _ in range(2):
        with pytest.raises(SpanError, match="traceId should be"):
            decode_v2(orjson.dumps([{"traceId": "xyz", "id": "1"}]))
        with pytest.raises(SpanError, match="name has 5000 characters"):
            decode_v2(orjson.dumps([{"traceId": "1", "id": "1", "name": "n" * 5000}]))
        with pytest.raises(SpanError, match="traceId should be"):
            decode_v2(orjson.dumps([{"traceId": ["1"], "id": "1"}]))


def test_times_are_positive_int64_microseconds() -> None:
    def times(**fields: Any) -> tuple[Any, Any]:
        (span,) = decode_v2(orjson.dumps([{"traceId": "1", "id": "1", **fields}]))
        return span.get("timestamp"), span.get("duration")

    top = 2**63 - 1
    assert times(timestamp=top, duration=1) == (top, 1)
    assert times(timestamp=0, duration=-5) == (None, None)  # unknown, not an error
    assert times(timestamp="1700000000000000", duration=12.9) == (1_700_000_000_000_000, 12)
    with pytest.raises(SpanError, match="timestamp is out of range"):
        decode_v2(b'[{"traceId":"1","id":"1","timestamp":9223372036854775808}]')
    with pytest.raises(SpanError, match="duration should be a number of microseconds"):
        times(duration=True)
