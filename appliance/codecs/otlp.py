"""OTLP traces (protobuf and JSON) into the span model, and the answers OTLP clients expect.

The mapping follows the OpenTelemetry specification's "OpenTelemetry to Zipkin Transformation"
(``specification/trace/sdk_exporters/zipkin.md`` and ``common/mapping-to-non-otlp.md``): service from
resource ``service.name`` (``unknown_service`` when absent), INTERNAL as no kind, the remote endpoint
from ``peer.service``, ``server.address``, ``net.peer.name``, ... in the spec's ranking, status as
``otel.status_code`` and ``error`` tags, scope as ``otel.scope.*`` and ``otel.library.*`` tags,
attributes as string tags, events as annotations, non-zero dropped counts as ``otel.dropped_*`` tags.

Two thin readers, one over protobuf objects and one over OTLP JSON dicts, pull the fields out and
hand them to one mapping function, ``_span``. What Zipkin cannot show rides under ``span["otel"]``::

    resource  {"attributes": {..}, "droppedAttributesCount"?: int, "schemaUrl"?: str}
    scope     {"name"?: str, "version"?: str, "attributes"?: {..}, "droppedAttributesCount"?: int,
               "schemaUrl"?: str}
    attributes        {key: value}   the span's attributes with their OTLP types (see below)
    events?   [{"timeUnixNano": int, "name": str, "attributes"?: {..}, "droppedAttributesCount"?: int}]
    links?    [{"traceId": hex, "spanId": hex, "traceState"?: str, "attributes"?: {..},
                "droppedAttributesCount"?: int, "flags"?: int}]
    traceState?       str (W3C tracestate)
    status?   {"code": "OK" | "ERROR", "message"?: str}   absent when UNSET
    flags?    int (W3C trace flags and the SpanFlags bits)
    kind?     "INTERNAL" when the span said so (Zipkin shows it as no kind)
    startTimeUnixNano, endTimeUnixNano   int, full precision

Keys marked ``?`` are absent when empty. ``resource`` and ``scope`` are shared by every span of one
batch from the same resource and scope: treat them as read-only. Attribute values keep their OTLP
type as JSON-ready Python values: string → ``str``, bool → ``bool``, int → ``int``, double →
``float``, array → ``list``, kvlist → ``dict``, bytes → ``{"bytesValue": "<base64>"}``, empty → ``None``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tracebox.appliance.limits import (
    MAX_TAG_KEY_CHARS,
    MAX_TAG_VALUE_CHARS,
    MAX_TAGS_PER_SPAN,
    tags_problem,
)
from tracebox.appliance.model import (
    DecodeError,
    Span,
    SpanError,
    check_span_count,
    check_tags,
    endpoint,
    normalize_annotations,
    span_name,
)

__all__ = [
    "OtlpBatch",
    "decode_otlp_json",
    "decode_otlp_protobuf",
    "decode_otlp_request",
    "encode_retry_info",
    "encode_rpc_status",
    "export_response",
    "is_json",
    "status_body",
]

_KINDS = (None, None, "SERVER", "CLIENT", "PRODUCER", "CONSUMER")  # indexed by OTLP SpanKind
_STATUS = (None, "OK", "ERROR")  # indexed by OTLP StatusCode
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_HEX = frozenset("0123456789abcdef")
# Remote service name, by the spec's ranking; the address attributes double as ip sources below.
_REMOTE_SERVICE_KEYS = (
    "peer.service",
    "server.address",
    "net.peer.name",
    "network.peer.address",
    "server.socket.domain",
    "server.socket.address",
    "net.sock.peer.name",
    "net.sock.peer.addr",
    "peer.hostname",
    "peer.address",
    "db.name",
)
_PEER_SOCKETS = (
    ("network.peer.address", "network.peer.port"),
    ("server.socket.address", "server.socket.port"),
    ("net.sock.peer.addr", "net.sock.peer.port"),
    ("net.peer.ip", "net.peer.port"),
)
_SERVER_PORTS = ("server.port", "net.peer.port")
_REMOTE_KEYS = frozenset((*_REMOTE_SERVICE_KEYS, *(address for address, _ in _PEER_SOCKETS), *_SERVER_PORTS))


@dataclass(slots=True)
class OtlpBatch:
    """Decoded spans plus what OTLP's ``partial_success`` reports about the ones left out."""

    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    error_message: str = ""


@dataclass(slots=True)
class _Context:
    """What every span of one (resource, scope) pair shares; built once per pair."""

    service: str
    tags: dict[str, str]
    otel_resource: dict[str, Any]
    otel_scope: dict[str, Any]
    #: The spans' local endpoint when none says ``network.local.address``, or why there is none
    #: (a service name over the limit rejects the resource's spans, not the request).
    local_endpoint: dict[str, Any] | None
    local_problem: str
    #: Whether ``tags`` break a length limit (each span's tags are then checked in full).
    tags_overlong: bool


class _Rejections:
    def __init__(self) -> None:
        self.count = 0
        self.first = ""

    def add(self, name: Any, exc: Exception) -> None:
        if not self.count:
            self.first = f"span {name!r}: {exc}"
        self.count += 1

    def fill(self, batch: OtlpBatch) -> OtlpBatch:
        if self.count:
            batch.rejected = self.count
            more = f" (and {self.count - 1} more)" if self.count > 1 else ""
            batch.error_message = f"rejected {self.count} span(s): {self.first}{more}"
        return batch


# ---------------------------------------------------------------------------------------------
# The one mapping
# ---------------------------------------------------------------------------------------------


def _context(
    resource_attrs: dict[str, Any],
    resource_dropped: int,
    resource_schema: str,
    scope_name: str,
    scope_version: str,
    scope_attrs: dict[str, Any],
    scope_dropped: int,
    scope_schema: str,
) -> _Context:
    service = resource_attrs.get("service.name")
    tags: dict[str, str] = {}
    namespace = resource_attrs.get("service.namespace")
    if namespace is not None:  # the spec: a tag, never part of the service name
        tags["service.namespace"] = _tag(namespace)
    if scope_name:
        tags["otel.scope.name"] = tags["otel.library.name"] = scope_name
    if scope_version:
        tags["otel.scope.version"] = tags["otel.library.version"] = scope_version
    service = service if isinstance(service, str) and service else "unknown_service"
    local_endpoint, local_problem = None, ""
    try:
        local_endpoint = endpoint(service)
    except SpanError as exc:
        local_problem = str(exc)
    return _Context(
        service=service,
        tags=tags,
        otel_resource=_compact(
            attributes=resource_attrs, droppedAttributesCount=resource_dropped, schemaUrl=resource_schema
        ),
        otel_scope=_compact(
            name=scope_name,
            version=scope_version,
            attributes=scope_attrs,
            droppedAttributesCount=scope_dropped,
            schemaUrl=scope_schema,
        ),
        local_endpoint=local_endpoint,
        local_problem=local_problem,
        tags_overlong=tags_problem(tags) is not None,
    )


def _compact(**fields: Any) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v}


def _span(
    ctx: _Context,
    trace_id: str,
    span_id: str,
    parent_id: str,
    name: str,
    kind: int,
    start_ns: int,
    end_ns: int,
    attributes: dict[str, Any],
    dropped_attributes: int,
    events: Sequence[dict[str, Any]],
    dropped_events: int,
    links: Sequence[dict[str, Any]],
    dropped_links: int,
    status_code: int,
    status_message: str,
    trace_state: str,
    flags: int,
) -> Span:
    """Map one OTLP span (ids as lower hex, attributes as typed values) to a normalised Zipkin span
    (see ``model``), built in its final form: ids from bytes and kinds from enums need none of
    ``normalize_span``'s checks, names, endpoints, annotations and tags get the same ones."""
    if len(trace_id) != 32 or trace_id == _ZERO_TRACE:
        raise SpanError(f"traceId should be 16 non-zero bytes (32 hex characters), got {trace_id!r}")
    if len(span_id) != 16 or span_id == _ZERO_SPAN:
        raise SpanError(f"spanId should be 8 non-zero bytes (16 hex characters), got {span_id!r}")
    if parent_id and len(parent_id) != 16:
        raise SpanError(f"parentSpanId should be 8 bytes (16 hex characters), got {parent_id!r}")
    zipkin_kind = _KINDS[kind] if 0 <= kind < 6 else None

    tags = ctx.tags.copy()
    overlong = ctx.tags_overlong  # checked by check_tags below, which names the problem
    for key, value in attributes.items():
        if type(value) is not str:  # most attributes are strings: no call
            value = _tag(value)
            if value is None:
                continue
        tags[key] = value
        if len(value) > MAX_TAG_VALUE_CHARS or len(key) > MAX_TAG_KEY_CHARS:
            overlong = True
    if tags.get("error") == "false":  # the spec: a boolean false error tag is removed
        del tags["error"]
    status = _STATUS[status_code] if 0 <= status_code < 3 else None
    if status:
        tags["otel.status_code"] = status
        if status == "ERROR":
            tags.setdefault("error", status_message)
            overlong = overlong or len(status_message) > MAX_TAG_VALUE_CHARS
    if dropped_attributes:
        tags["otel.dropped_attributes_count"] = str(dropped_attributes)
    if dropped_events:
        tags["otel.dropped_events_count"] = str(dropped_events)
    if dropped_links:
        tags["otel.dropped_links_count"] = str(dropped_links)

    otel: dict[str, Any] = {
        "resource": ctx.otel_resource,
        "scope": ctx.otel_scope,
        "attributes": attributes,
        "startTimeUnixNano": start_ns,
        "endTimeUnixNano": end_ns,
    }
    if events:
        otel["events"] = events
    if links:
        otel["links"] = links
    if trace_state:
        otel["traceState"] = trace_state
    if status:
        otel["status"] = {"code": status, "message": status_message} if status_message else {"code": status}
    if flags:
        otel["flags"] = flags
    if kind == 1:
        otel["kind"] = "INTERNAL"

    out: Span = {"traceId": trace_id[16:] if trace_id.startswith(_ZERO_SPAN) else trace_id}
    if parent_id and parent_id != _ZERO_SPAN and parent_id != span_id:
        out["parentId"] = parent_id
    out["id"] = span_id
    if zipkin_kind:
        out["kind"] = zipkin_kind
    if name:
        out["name"] = span_name(name)
    timestamp = start_ns // 1000
    if timestamp > 0:
        out["timestamp"] = timestamp
        if end_ns >= start_ns:
            duration = (end_ns - start_ns) // 1000
            out["duration"] = duration if duration > 0 else 1
    if "network.local.address" in attributes:
        local_endpoint = endpoint(
            ctx.service,
            attributes["network.local.address"],
            None,
            _port(attributes.get("network.local.port")),
        )
    elif ctx.local_problem:
        raise SpanError(ctx.local_problem)
    else:
        local_endpoint = ctx.local_endpoint and ctx.local_endpoint.copy()
    if local_endpoint:
        out["localEndpoint"] = local_endpoint
    remote = _remote_endpoint(zipkin_kind, attributes)
    if remote:
        out["remoteEndpoint"] = remote
    if events:
        annotations = normalize_annotations(_annotations(events))
        if annotations:
            out["annotations"] = annotations
    if tags:
        if overlong or len(tags) > MAX_TAGS_PER_SPAN:
            check_tags(tags)
        out["tags"] = tags
    out["otel"] = otel
    return out


def _annotations(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Events become annotations: the name, or ``"name":{attributes as JSON}`` as the spec shows."""
    out = []
    for event in events:
        timestamp = event["timeUnixNano"] // 1000
        attrs = event.get("attributes")
        value = f'"{event["name"]}":{orjson.dumps(attrs).decode()}' if attrs else event["name"]
        if timestamp > 0 and value:
            out.append({"timestamp": timestamp, "value": value})
    return out


def _remote_endpoint(kind: str | None, attributes: dict[str, Any]) -> dict[str, Any] | None:
    """Service name only for CLIENT and PRODUCER (on a SERVER span ``server.address`` is the span's
    own host); the peer's socket address for every kind but INTERNAL."""
    if kind is None or _REMOTE_KEYS.isdisjoint(attributes):
        return None
    address = port = service = None
    for address_key, port_key in _PEER_SOCKETS:
        value = attributes.get(address_key)
        if isinstance(value, str) and value:
            address, port = value, _port(attributes.get(port_key))
            break
    if kind in ("CLIENT", "PRODUCER"):
        for key in _REMOTE_SERVICE_KEYS:
            value = attributes.get(key)
            if isinstance(value, str) and value:
                service = value
                break
        if not port:
            port = next((p for p in map(_port, map(attributes.get, _SERVER_PORTS)) if p), None)
    return endpoint(service, address, None, port)


def _port(value: Any) -> int | None:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if type(value) is int and 0 < value <= 65535:
        return value
    return None


def _tag(value: Any) -> str | None:
    """A typed attribute value as Zipkin tag text: bools lower-case, arrays and maps as JSON."""
    kind = type(value)
    if kind is str:
        return value
    if kind is bool:
        return "true" if value else "false"
    if kind is int or kind is float:
        return str(value)
    if value is None:
        return None
    if kind is dict and len(value) == 1 and "bytesValue" in value:
        return value["bytesValue"]
    return orjson.dumps(value).decode()


# ---------------------------------------------------------------------------------------------
# Protobuf reader
# ---------------------------------------------------------------------------------------------


def decode_otlp_protobuf(body: bytes) -> OtlpBatch:
    try:
        request = ExportTraceServiceRequest.FromString(body)
    except ProtobufDecodeError as exc:
        raise DecodeError(f"Malformed OTLP protobuf ExportTraceServiceRequest: {exc}") from None
    return decode_otlp_request(request)


def decode_otlp_request(request: ExportTraceServiceRequest) -> OtlpBatch:
    check_span_count(sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans))
    batch = OtlpBatch()
    rejections = _Rejections()
    append = batch.spans.append
    for resource_spans in request.resource_spans:
        resource = resource_spans.resource
        resource_attrs = _pb_attributes(resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            scope = scope_spans.scope
            ctx = _context(
                resource_attrs,
                resource.dropped_attributes_count,
                resource_spans.schema_url,
                scope.name,
                scope.version,
                _pb_attributes(scope.attributes),
                scope.dropped_attributes_count,
                scope_spans.schema_url,
            )
            for span in scope_spans.spans:
                try:
                    status, events, links = span.status, span.events, span.links
                    append(
                        _span(
                            ctx,
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            span.kind,
                            span.start_time_unix_nano,
                            span.end_time_unix_nano,
                            _pb_attributes(span.attributes),
                            span.dropped_attributes_count,
                            [_pb_event(e) for e in events] if events else (),
                            span.dropped_events_count,
                            [_pb_link(link) for link in links] if links else (),
                            span.dropped_links_count,
                            status.code,
                            status.message,
                            span.trace_state,
                            span.flags,
                        )
                    )
                except SpanError as exc:
                    rejections.add(span.name, exc)
    return rejections.fill(batch)


def _pb_event(event: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"timeUnixNano": event.time_unix_nano, "name": event.name}
    if event.attributes:
        out["attributes"] = _pb_attributes(event.attributes)
    if event.dropped_attributes_count:
        out["droppedAttributesCount"] = event.dropped_attributes_count
    return out


def _pb_link(link: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": link.trace_id.hex(), "spanId": link.span_id.hex()}
    if link.trace_state:
        out["traceState"] = link.trace_state
    if link.attributes:
        out["attributes"] = _pb_attributes(link.attributes)
    if link.dropped_attributes_count:
        out["droppedAttributesCount"] = link.dropped_attributes_count
    if link.flags:
        out["flags"] = link.flags
    return out


def _pb_attributes(key_values: Any) -> dict[str, Any]:
    out = {}
    for kv in key_values:  # a loop: cheaper than a comprehension's call for a handful of items
        value = kv.value
        out[kv.key] = value.string_value or _pb_value(value)  # most are strings: no WhichOneof
    return out


def _pb_value(value: Any) -> Any:
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "int_value":
        return value.int_value
    if which == "bool_value":
        return value.bool_value
    if which == "double_value":
        return value.double_value
    if which == "array_value":
        return [_pb_value(v) for v in value.array_value.values]
    if which == "kvlist_value":
        return _pb_attributes(value.kvlist_value.values)
    if which == "bytes_value":
        return {"bytesValue": base64.b64encode(value.bytes_value).decode()}
    return None


# ---------------------------------------------------------------------------------------------
# JSON reader (OTLP/JSON: hex ids, enums as integers or names, int64 as string or number)
# ---------------------------------------------------------------------------------------------

_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_INT_MIN, _UINT_MAX = -(1 << 63), (1 << 64) - 1  # int64 and uint64 fields share one reader
_SPAN_KIND_NAMES = {f"SPAN_KIND_{n}": i for i, n in enumerate(("UNSPECIFIED", "INTERNAL", *_KINDS[2:]))}
_STATUS_NAMES = {"STATUS_CODE_UNSET": 0, "STATUS_CODE_OK": 1, "STATUS_CODE_ERROR": 2}


def _get(obj: dict[str, Any], key: str, default: Any = None) -> Any:
    """A field by its lowerCamelCase JSON name, or by its proto (snake_case) name."""
    value = obj.get(key)
    if value is None:
        value = obj.get(_SNAKE_CACHE.get(key) or _snake(key))  # most absent fields: no call
    return default if value is None else value


_SNAKE_CACHE: dict[str, str] = {}


def _snake(key: str) -> str:
    snake = _SNAKE_CACHE.get(key)
    if snake is None:
        snake = _SNAKE_CACHE[key] = _SNAKE.sub("_", key).lower()
    return snake


def decode_otlp_json(body: bytes) -> OtlpBatch:
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"Malformed OTLP JSON: {exc}") from None
    if not isinstance(data, dict):
        raise DecodeError("Expected an OTLP ExportTraceServiceRequest JSON object")
    batch = OtlpBatch()
    rejections = _Rejections()
    append = batch.spans.append
    total = 0
    try:
        for resource_spans in _list(data, "resourceSpans"):
            resource = _object(resource_spans, "resource")
            resource_attrs = _json_attributes(resource)
            for scope_spans in _list(resource_spans, "scopeSpans"):
                scope = _object(scope_spans, "scope")
                ctx = _context(
                    resource_attrs,
                    _int(_get(resource, "droppedAttributesCount", 0)),
                    _str(_get(resource_spans, "schemaUrl", "")),
                    _str(_get(scope, "name", "")),
                    _str(_get(scope, "version", "")),
                    _json_attributes(scope),
                    _int(_get(scope, "droppedAttributesCount", 0)),
                    _str(_get(scope_spans, "schemaUrl", "")),
                )
                spans = _list(scope_spans, "spans")
                total += len(spans)
                check_span_count(total)
                for span in spans:
                    try:
                        append(_json_span(ctx, span))
                    except SpanError as exc:
                        rejections.add(span.get("name") if isinstance(span, dict) else None, exc)
    except SpanError as exc:  # a malformed resource or scope: no span in it can be placed
        raise DecodeError(f"Malformed OTLP JSON: {exc}") from None
    return rejections.fill(batch)


def _json_span(ctx: _Context, span: Any) -> Span:
    if not isinstance(span, dict):
        raise SpanError(f"a span should be an object, got {type(span).__name__}")
    status = _object(span, "status")
    events, links = _list(span, "events"), _list(span, "links")
    return _span(
        ctx,
        _hex_id(span, "traceId"),
        _hex_id(span, "spanId"),
        _hex_id(span, "parentSpanId"),
        _str(_get(span, "name", "")),
        _enum(_get(span, "kind", 0), _SPAN_KIND_NAMES),
        _int(_get(span, "startTimeUnixNano", 0)),
        _int(_get(span, "endTimeUnixNano", 0)),
        _json_attributes(span),
        _int(_get(span, "droppedAttributesCount", 0)),
        [_json_event(e) for e in events] if events else (),
        _int(_get(span, "droppedEventsCount", 0)),
        [_json_link(link) for link in links] if links else (),
        _int(_get(span, "droppedLinksCount", 0)),
        _enum(_get(status, "code", 0), _STATUS_NAMES),
        _str(_get(status, "message", "")),
        _str(_get(span, "traceState", "")),
        _int(_get(span, "flags", 0)),
    )


def _json_event(event: Any) -> dict[str, Any]:
    if not isinstance(event, dict):
        raise SpanError("an event should be an object")
    out: dict[str, Any] = {
        "timeUnixNano": _int(_get(event, "timeUnixNano", 0)),
        "name": _str(_get(event, "name", "")),
    }
    attributes = _json_attributes(event)
    if attributes:
        out["attributes"] = attributes
    dropped = _int(_get(event, "droppedAttributesCount", 0))
    if dropped:
        out["droppedAttributesCount"] = dropped
    return out


def _json_link(link: Any) -> dict[str, Any]:
    if not isinstance(link, dict):
        raise SpanError("a link should be an object")
    out: dict[str, Any] = {"traceId": _hex_id(link, "traceId"), "spanId": _hex_id(link, "spanId")}
    trace_state = _str(_get(link, "traceState", ""))
    if trace_state:
        out["traceState"] = trace_state
    attributes = _json_attributes(link)
    if attributes:
        out["attributes"] = attributes
    dropped = _int(_get(link, "droppedAttributesCount", 0))
    if dropped:
        out["droppedAttributesCount"] = dropped
    flags = _int(_get(link, "flags", 0))
    if flags:
        out["flags"] = flags
    return out


def _json_attributes(owner: dict[str, Any], key: str = "attributes") -> dict[str, Any]:
    out = {}
    for kv in _list(owner, key):
        if not isinstance(kv, dict) or not isinstance(kv.get("key"), str):
            raise SpanError(f"an attribute should be an object with a string key, got {kv!r:.60}")
        value = kv.get("value")
        text = value.get("stringValue") if type(value) is dict else None
        out[kv["key"]] = text if type(text) is str else _json_value(value)  # strings: no call
    return out


def _json_value(value: Any) -> Any:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpanError(f"an AnyValue should be an object, got {value!r:.60}")
    for key, item in value.items():
        if item is None:
            continue
        match key:
            case "stringValue" | "string_value":
                return _str(item)
            case "intValue" | "int_value":
                return _int(item)
            case "boolValue" | "bool_value":
                if not isinstance(item, bool):
                    raise SpanError(f"boolValue should be true or false, got {item!r:.60}")
                return item
            case "doubleValue" | "double_value":
                return _double(item)
            case "arrayValue" | "array_value":
                return [_json_value(v) for v in _list(item, "values")]
            case "kvlistValue" | "kvlist_value":
                return _json_attributes(item, "values")
            case "bytesValue" | "bytes_value":
                return {"bytesValue": _base64(item)}
    return None


def _hex_id(obj: dict[str, Any], key: str) -> str:
    value = _get(obj, key, "")
    if not isinstance(value, str):
        raise SpanError(f"{key} should be a hex string, got {value!r:.60}")
    lowered = value.lower()
    if not _HEX.issuperset(lowered) or len(lowered) % 2:
        raise SpanError(f"{key} should be hex, got {value!r:.60}")
    return lowered


def _list(obj: dict[str, Any], key: str) -> list[Any]:
    value = _get(_holder(obj, key), key, [])
    if not isinstance(value, list):
        raise SpanError(f"{key} should be a list, got {value!r:.60}")
    return value


def _object(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = _get(_holder(obj, key), key, {})
    if not isinstance(value, dict):
        raise SpanError(f"{key} should be an object, got {value!r:.60}")
    return value


def _holder(obj: Any, key: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SpanError(f"expected an object holding {key}, got {obj!r:.60}")
    return obj


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise SpanError(f"expected a string, got {value!r:.60}")
    return value


def _int(value: Any) -> int:
    """int64 fields arrive as JSON numbers or as decimal strings; none is wider than 64 bits."""
    number: int | None = None
    if type(value) is int:
        number = value
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            number = None
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None:
        raise SpanError(f"expected an integer, got {value!r:.60}")
    if not _INT_MIN <= number <= _UINT_MAX:
        raise SpanError(f"integer out of the 64-bit range: {value!r:.60}")
    return number


def _double(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if value in ("NaN", "Infinity", "-Infinity"):
        return float(value)
    raise SpanError(f"doubleValue should be a number, got {value!r:.60}")


def _enum(value: Any, names: dict[str, int]) -> int:
    if isinstance(value, str) and value in names:
        return names[value]
    return _int(value)


def _base64(value: Any) -> str:
    try:
        raw = base64.b64decode(_str(value).replace("-", "+").replace("_", "/") + "==")
    except ValueError:  # binascii.Error, or a non-ASCII string
        raise SpanError(f"bytesValue should be base64, got {value!r:.60}") from None
    return base64.b64encode(raw).decode()


# ---------------------------------------------------------------------------------------------
# Answers
# ---------------------------------------------------------------------------------------------


def is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


def export_response(content_type: str, rejected: int = 0, error_message: str = "") -> bytes:
    """An ``ExportTraceServiceResponse`` in the request's encoding; empty unless spans were rejected."""
    response = ExportTraceServiceResponse()
    if rejected or error_message:
        response.partial_success.CopyFrom(
            ExportTracePartialSuccess(rejected_spans=rejected, error_message=error_message)
        )
    if is_json(content_type):
        return json_format.MessageToJson(response, indent=None).encode()
    return response.SerializeToString()


def status_body(content_type: str, code: int, message: str) -> bytes:
    """A ``google.rpc.Status`` error body, as OTLP/HTTP asks for on 4xx and 5xx answers."""
    if is_json(content_type):
        return orjson.dumps({"code": code, "message": message})
    return encode_rpc_status(code, message)


def encode_rpc_status(code: int, message: str, details: tuple[tuple[str, bytes], ...] = ()) -> bytes:
    """``google.rpc.Status`` by hand (googleapis-common-protos is not a dependency).

    ``details`` holds ``(type_url, serialized message)`` pairs packed as ``google.protobuf.Any``.
    """
    out = bytearray()
    if code:
        out += b"\x08" + _varint(code)
    if message:
        out += _length_delimited(2, message.encode())
    for type_url, value in details:
        out += _length_delimited(3, _length_delimited(1, type_url.encode()) + _length_delimited(2, value))
    return bytes(out)


def encode_retry_info(delay_seconds: float) -> bytes:
    """``google.rpc.RetryInfo{retry_delay: Duration}``, the retry hint of an UNAVAILABLE answer."""
    seconds = int(delay_seconds)
    nanos = round((delay_seconds - seconds) * 1e9)
    duration = bytearray()
    if seconds:
        duration += b"\x08" + _varint(seconds)
    if nanos:
        duration += b"\x10" + _varint(nanos)
    return _length_delimited(1, bytes(duration))


def _length_delimited(field_number: int, payload: bytes) -> bytes:
    return _varint(field_number << 3 | 2) + _varint(len(payload)) + payload


def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # negative int32/int64 go out as ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)
