"""Zipkin v1 JSON (``POST /api/v1/spans``) in, converted to v2 spans the way Zipkin's
``V1SpanConverter`` does it.

A v1 span is one RPC as seen by every host that took part, each annotation carrying the endpoint
that logged it. Conversion groups annotations by service name into one v2 span per host: core
annotations (cs/cr, sr/ss, ms/ws, wr/mr) become kind, timestamp and duration, address binary
annotations (ca/sa/ma) become the remote endpoint, and other binary annotations become tags.

One deliberate difference from Zipkin: it drops binary annotations whose value is a JSON number
or a boolean other than an address marker; here they become tags holding their JSON text, as
tags of those types do in the v2 codec (``model.tag_value``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from tracebox.appliance.codecs.zipkin_json import read_span_list
from tracebox.appliance.model import (
    Span,
    SpanError,
    check_span_count,
    normalize_endpoint,
    normalize_span,
    normalize_span_id,
    normalize_trace_id,
    tag_value,
)

Endpoint = dict[str, Any]

_CORE_KINDS = {
    "cs": "CLIENT",
    "cr": "CLIENT",
    "sr": "SERVER",
    "ss": "SERVER",
    "ms": "PRODUCER",
    "mr": "CONSUMER",
    "ws": None,
    "wr": None,
}
_ADDRESS_KEYS = frozenset(("ca", "sa", "ma"))


class _Annotation(NamedTuple):
    timestamp: int
    value: str
    endpoint: Endpoint | None


class _BinaryAnnotation(NamedTuple):
    key: str
    value: str | None  # None marks an address annotation
    endpoint: Endpoint | None


class _V1Span(NamedTuple):
    trace_id: str
    parent_id: Any
    id: str
    name: Any
    timestamp: int
    duration: int
    annotations: list[_Annotation]
    binary_annotations: list[_BinaryAnnotation]
    debug: bool


def decode_v1(body: bytes) -> list[Span]:
    """Parse a JSON list of v1 spans into normalised v2 spans; one v1 span may yield several."""
    data = read_span_list(body, "JSON_V1")
    spans = [normalize_span(span) for item in data for span in _Converter(_read_span(item)).convert()]
    check_span_count(len(spans))
    return spans


def _read_span(raw: Any) -> _V1Span:
    if not isinstance(raw, dict):
        raise SpanError(f"Expected a span object, got {type(raw).__name__}")
    if "traceId" not in raw:
        raise SpanError("Missing traceId")
    if "id" not in raw:
        raise SpanError("Missing id")
    annotations = [_read_annotation(a) for a in _list(raw.get("annotations"), "annotations")]
    binary = [_read_binary_annotation(b) for b in _list(raw.get("binaryAnnotations"), "binaryAnnotations")]
    binary = [b for b in binary if b is not None]
    # v1 spans iterate annotations by (timestamp, value) and binary annotations by key, stably.
    annotations.sort(key=lambda a: (a.timestamp, a.value))
    binary.sort(key=lambda b: b.key)
    return _V1Span(
        trace_id=_trace_id(raw["traceId"]),
        parent_id=raw.get("parentId"),
        id=_span_id(raw["id"]),
        name=raw.get("name"),
        timestamp=_micros(raw.get("timestamp"), "timestamp"),
        duration=_micros(raw.get("duration"), "duration"),
        annotations=annotations,
        binary_annotations=binary,
        debug=raw.get("debug") is True,
    )


def _trace_id(value: Any) -> str:
    """v1 reads a high half only from a 32-character id: one of 17 to 31 characters keeps its low 64 bits."""
    trace_id = normalize_trace_id(value)
    if 16 < len(value) < 32:
        trace_id = trace_id[-16:]
    if not int(trace_id, 16):
        raise SpanError("traceId is all zeros")
    return trace_id


def _span_id(value: Any) -> str:
    span_id = normalize_span_id(value)
    if not int(span_id, 16):
        raise SpanError("id is all zeros")
    return span_id


def _list(value: Any, field: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise SpanError(f"{field} should be a list, got {type(value).__name__}")
    return value


def _micros(value: Any, field: str) -> int:
    """Epoch or elapsed microseconds; 0 when absent, as in v1's long fields."""
    if value is None:
        return 0
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    raise SpanError(f"{field} should be a number of microseconds, got {value!r:.40}")


def _read_annotation(raw: Any) -> _Annotation:
    if not isinstance(raw, dict):
        raise SpanError(f"annotation should be an object, got {type(raw).__name__}")
    value = raw.get("value")
    if raw.get("timestamp") is None or not isinstance(value, str):
        raise SpanError(f"Incomplete annotation: {orjson.dumps(raw).decode():.80}")
    return _Annotation(
        _micros(raw["timestamp"], "annotation timestamp"), value, normalize_endpoint(raw.get("endpoint"))
    )


def _read_binary_annotation(raw: Any) -> _BinaryAnnotation | None:
    """Strings are tags (or lenient address markers); ``true`` with an endpoint under ca/sa/ma
    is an address; other booleans and numbers become string tags."""
    if not isinstance(raw, dict):
        raise SpanError(f"binary annotation should be an object, got {type(raw).__name__}")
    key = raw.get("key")
    if not isinstance(key, str):
        raise SpanError(f"No key in binary annotation: {orjson.dumps(raw).decode():.80}")
    value = raw.get("value")
    endpoint = normalize_endpoint(raw.get("endpoint"))  # an empty one counts as none
    if isinstance(value, str):
        return _BinaryAnnotation(key, value, endpoint)
    if key in _ADDRESS_KEYS:
        return _BinaryAnnotation(key, None, endpoint) if value is True and endpoint else None
    if isinstance(value, (bool, int, float)):
        return _BinaryAnnotation(key, tag_value(value), endpoint)
    return None


def _same_service(left: Endpoint | None, right: Endpoint | None) -> bool:
    return (left or {}).get("serviceName") == (right or {}).get("serviceName")


class _Converter:
    """Splits one v1 span into v2 span dicts, one per service name that logged to it."""

    def __init__(self, source: _V1Span) -> None:
        self.source = source
        self.first = self._builder(None)
        self.others: list[Span] = []
        self.core: dict[str, _Annotation] = {}

    def convert(self) -> list[Span]:
        self._process_annotations()
        self._process_binary_annotations()
        return [self.first, *self.others]

    def _builder(self, endpoint: Endpoint | None) -> Span:
        source = self.source
        span: Span = {"traceId": source.trace_id, "parentId": source.parent_id, "id": source.id}
        span.update(name=source.name, localEndpoint=endpoint, annotations=[], tags={})
        if source.debug:
            span["debug"] = True
        return span

    def _new_span(self, endpoint: Endpoint) -> Span:
        span = self._builder(endpoint)
        self.others.append(span)
        return span

    def _for_endpoint(self, endpoint: Endpoint | None) -> Span:
        """The span of the host that logged ``endpoint``; data without an endpoint goes to the first."""
        if endpoint is None:
            return self.first
        for span in (self.first, *self.others):
            if span["localEndpoint"] is None:
                span["localEndpoint"] = endpoint
                return span
            if _same_service(span["localEndpoint"], endpoint):
                return span
        return self._new_span(endpoint)

    def _process_annotations(self) -> None:
        for annotation in self.source.annotations:
            span = self._for_endpoint(annotation.endpoint)
            # core annotations need an endpoint; without one they are ordinary annotations
            if annotation.endpoint is not None and annotation.value in _CORE_KINDS:
                kind = _CORE_KINDS[annotation.value]
                if kind:
                    span["kind"] = kind
                self.core[annotation.value] = annotation
            else:
                _annotate(span, annotation.timestamp, annotation.value)
        self._fill_missing_start("cs", "cr")
        self._fill_missing_start("sr", "ss")
        self._apply_rpc()
        self._mark_server_only_shared()
        self._apply_messaging()

    def _fill_missing_start(self, start: str, end: str) -> None:
        """An event-model bridge may send only the end annotation; its span timestamp stands in."""
        source, end_annotation = self.source, self.core.get(end)
        if start in self.core or end_annotation is None or not source.timestamp or not source.duration:
            return
        if source.timestamp + source.duration == end_annotation.timestamp:
            self.core[start] = _Annotation(source.timestamp, start, end_annotation.endpoint)

    def _apply_rpc(self) -> None:
        cs, cr, sr, ss = (self.core.get(k) for k in ("cs", "cr", "sr", "ss"))
        if cs and sr:
            # the client owns the span's timestamp and duration; the server side is shared
            self._timestamp_duration(cs, cr)
            client = self._for_endpoint(cs.endpoint)
            if _same_service(cs.endpoint, sr.endpoint):  # loopback: still two spans
                client["kind"] = "CLIENT"
                server = self._new_span(sr.endpoint)
                server["kind"] = "SERVER"
            else:
                server = self._for_endpoint(sr.endpoint)
            server["shared"] = True
            server["timestamp"] = sr.timestamp
            if ss:
                server["duration"] = ss.timestamp - sr.timestamp
            if cr is None and not self.source.duration:
                client.pop("duration", None)  # one-way RPC
        elif cs and cr:
            self._timestamp_duration(cs, cr)
        elif sr and ss:
            self._timestamp_duration(sr, ss)
        else:
            self._handle_incomplete_rpc(cs, cr, sr, ss)

    def _handle_incomplete_rpc(self, *core: _Annotation | None) -> None:
        """Half an RPC: the start annotation gives the timestamp, the end one stays an annotation."""
        cs, cr, sr, ss = core
        for span in (self.first, *self.others):
            if span.get("kind") not in ("CLIENT", "SERVER"):
                continue
            start, end = (cs, cr) if span["kind"] == "CLIENT" else (sr, ss)
            if start:
                span["timestamp"] = start.timestamp
            if end:
                _annotate(span, end.timestamp, end.value)
        if self.source.timestamp:
            self.first["timestamp"] = self.source.timestamp
            self.first["duration"] = self.source.duration

    def _mark_server_only_shared(self) -> None:
        """v1 had no shared flag: a server-only span without its own timestamp (or duration,
        despite "ss") is taken to share the client's span id."""
        sr, source = self.core.get("sr"), self.source
        if "cs" in self.core or sr is None:
            return
        if not source.timestamp or ("ss" in self.core and not source.duration):
            self._for_endpoint(sr.endpoint)["shared"] = True

    def _apply_messaging(self) -> None:
        ms, mr, ws, wr = (self.core.get(k) for k in ("ms", "mr", "ws", "wr"))
        if ms and mr:  # not supposed to share a span, but split them if they do
            producer = self._for_endpoint(ms.endpoint)
            if _same_service(ms.endpoint, mr.endpoint):
                producer["kind"] = "PRODUCER"
                consumer = self._new_span(mr.endpoint)
                consumer["kind"] = "CONSUMER"
            else:
                consumer = self._for_endpoint(mr.endpoint)
            consumer["shared"] = True
            consumer["timestamp"] = (wr or mr).timestamp
            if wr:
                consumer["duration"] = mr.timestamp - wr.timestamp
            producer["timestamp"] = ms.timestamp
            producer["duration"] = ws.timestamp - ms.timestamp if ws else None
        elif ms:
            self._timestamp_duration(ms, ws)
        elif mr:
            self._timestamp_duration(wr or mr, mr if wr else None)
        else:
            for wire in (ws, wr):
                if wire:
                    _annotate(self._for_endpoint(wire.endpoint), wire.timestamp, wire.value)

    def _timestamp_duration(self, begin: _Annotation, end: _Annotation | None) -> None:
        """The v1 span's own timestamp and duration win when both are set; else the annotations'."""
        span, source = self._for_endpoint(begin.endpoint), self.source
        if source.timestamp and source.duration:
            span["timestamp"], span["duration"] = source.timestamp, source.duration
        else:
            span["timestamp"] = begin.timestamp
            if end:
                span["duration"] = end.timestamp - begin.timestamp

    def _process_binary_annotations(self) -> None:
        addresses: dict[str, Endpoint | None] = {}
        for b in self.source.binary_annotations:
            # ca/sa/ma are addresses whatever their value: some tracers send "1" rather than true
            if b.key in _ADDRESS_KEYS:
                addresses[b.key] = b.endpoint
                continue
            span = self._for_endpoint(b.endpoint)
            if b.key == "lc" and not b.value:
                continue  # an empty "lc" only marks the local endpoint
            span["tags"][b.key] = b.value
        ca, sa, ma = addresses.get("ca"), addresses.get("sa"), addresses.get("ma")
        core = self.core
        if not core.keys() & {"cs", "cr", "sr", "ss"} and (ca or sa):
            self._addresses_without_rpc(ca, sa)
            return
        server = core.get("sr") or core.get("ss")
        if ca and server and ca != server.endpoint:
            # Finagle puts the client socket under the server's own name: drop it, or the
            # dependency graph gains a loopback link
            if _same_service(ca, server.endpoint):
                ca = {k: v for k, v in ca.items() if k != "serviceName"} or None
            self._for_endpoint(server.endpoint)["remoteEndpoint"] = ca
        client = core.get("cs") or core.get("cr")
        if sa and client:
            self._for_endpoint(client.endpoint)["remoteEndpoint"] = sa
        if ma:  # both sides get the broker, should a messaging span be shared
            for side in (core.get("ms"), core.get("mr")):
                if side:
                    self._for_endpoint(side.endpoint)["remoteEndpoint"] = ma

    def _addresses_without_rpc(self, ca: Endpoint | None, sa: Endpoint | None) -> None:
        """Addresses but no core annotations: "sa" alone is just a remote address, "ca" alone
        means a server span, and both make "ca" the local side."""
        if ca and sa:
            self._for_endpoint(ca)["remoteEndpoint"] = sa
        elif sa:
            self.first["remoteEndpoint"] = sa
        else:
            self.first["kind"] = "SERVER"
            self.first["remoteEndpoint"] = ca


def _annotate(span: Span, timestamp: int, value: str) -> None:
    span["annotations"].append({"timestamp": timestamp, "value": value})
