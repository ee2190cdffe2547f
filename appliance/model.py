"""The span model: Zipkin v2 JSON, normalised the way Zipkin's ``Span.Builder`` does it.

Every codec decodes into this one shape, a plain ``dict`` with Zipkin v2's camelCase keys, so the
hot path builds no model objects of its own and the stored form is exactly what the API returns.
What Zipkin cannot show (OTLP resource and scope attributes, typed values, events' attributes,
links, trace state, status) rides along under the ``otel`` key, which the store keeps apart from
the Zipkin JSON.

A normalised span has these keys, absent rather than null when unknown::

    traceId   16 or 32 lower-hex characters (a zero high half cut to 16)
    id        16 lower-hex characters
    parentId  16 lower-hex characters, never all zeros, never equal to ``id``
    kind      CLIENT | SERVER | PRODUCER | CONSUMER
    name      lower-cased
    timestamp epoch microseconds, > 0
    duration  microseconds, > 0
    localEndpoint / remoteEndpoint  {serviceName (lower-cased), ipv4, ipv6, port}
    annotations  [{timestamp, value}] sorted by (timestamp, value), duplicates removed
    tags      {str: str}
    debug / shared  only when true (``shared`` never on a CLIENT span)
    otel      OTLP extras (see ``appliance.codecs.otlp``)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from functools import lru_cache, wraps
from typing import Any

import orjson

from tracebox.appliance import limits

KINDS = frozenset(("CLIENT", "SERVER", "PRODUCER", "CONSUMER"))
_HEX = frozenset("0123456789abcdef")
_ZERO16 = "0" * 16
_INT64_END = 1 << 63

Span = dict[str, Any]


class DecodeError(ValueError):
    """A request body that cannot be read; the message names the problem for a 400 answer."""


class SpanError(DecodeError):
    """One span that cannot be accepted."""


class TooManySpans(DecodeError):
    """A request over ``limits.MAX_SPANS_PER_REQUEST``: answered with 413."""

    status = 413


def check_span_count(count: int) -> None:
    problem = limits.span_count_problem(count)
    if problem:
        raise TooManySpans(problem)


def _check(problem: str | None) -> None:
    if problem:
        raise SpanError(problem)


def _remembered(normalise: Callable[[Any], str]) -> Callable[[Any], str]:
    """``normalise`` with its results for recent strings kept: a batch repeats the same trace ids
    and span names span after span. The memory is emptied when full (what repeats comes back at
    once, what does not would only fill it)."""
    recent: dict[str, str] = {}

    @wraps(normalise)
    def remembered(value: Any) -> str:
        if type(value) is not str:
            return normalise(value)  # not text: nothing to remember, normalise decides
        known = recent.get(value)
        if known is None:
            known = normalise(value)
            if len(recent) >= RECENT_SIZE:
                recent.clear()
            recent[value] = known
        return known

    return remembered


#: Strings each ``_remembered`` function keeps.
RECENT_SIZE = 4_096


def _trace_id(value: Any) -> str:
    """Lower-hex, left-padded to 16 or 32 characters; a 128-bit id with a zero high half becomes 64-bit."""
    hex_id = _hex(value, "traceId", 32)
    if len(hex_id) > 16:
        hex_id = hex_id.rjust(32, "0")
        if hex_id.startswith(_ZERO16):
            hex_id = hex_id[16:]
    return hex_id.rjust(16, "0")


normalize_trace_id = _remembered(_trace_id)


def normalize_span_id(value: Any, field: str = "id") -> str:
    return _hex(value, field, 16).rjust(16, "0")


def _hex(value: Any, field: str, max_len: int) -> str:
    if not isinstance(value, str) or not value:
        raise SpanError(f"{field} should be a 1 to {max_len} character lower-hex string, got {_show(value)}")
    lowered = value.lower()
    if len(lowered) > max_len or not _HEX.issuperset(lowered):
        raise SpanError(f"{field} should be a 1 to {max_len} character lower-hex string, got {_show(value)}")
    return lowered


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _positive_int(value: Any, field: str) -> int | None:
    if type(value) is int and 0 < value < _INT64_END:  # as every client sends them
        return value
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        else:
            raise SpanError(f"{field} should be a number of microseconds, got {_show(value)}")
    value = int(value)
    if value >= _INT64_END:
        raise SpanError(f"{field} is out of range: {value}")
    return value if value > 0 else None


@lru_cache(maxsize=4096)
def _endpoint(service: Any, ipv4: Any, ipv6: Any, port: Any) -> tuple[tuple[str, Any], ...] | None:
    """Normalise one endpoint; cached because a batch repeats the same few endpoints."""
    out: list[tuple[str, Any]] = []
    if service is not None:
        if not isinstance(service, str):
            raise SpanError(f"serviceName should be a string, got {_show(service)}")
        if service:
            _check(limits.name_problem(service, "serviceName"))
            out.append(("serviceName", service.lower()))
    for raw in (ipv4, ipv6):
        if raw in (None, ""):
            continue
        try:
            ip = ipaddress.ip_address(raw)
        except ValueError:
            continue  # Zipkin drops an address it cannot parse rather than the span
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        key = "ipv4" if ip.version == 4 else "ipv6"
        if all(k != key for k, _ in out):
            out.append((key, str(ip)))
    if port not in (None, 0):
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
            raise SpanError(f"port should be between 1 and 65535, got {_show(port)}")
        out.append(("port", port))
    return tuple(out) or None


def normalize_endpoint(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise SpanError(f"endpoint should be an object, got {_show(value)}")
    return endpoint(value.get("serviceName"), value.get("ipv4"), value.get("ipv6"), value.get("port"))


def endpoint(service: Any, ipv4: Any = None, ipv6: Any = None, port: Any = None) -> dict[str, Any] | None:
    """The normalised endpoint of these fields (an address is filed as v4 or v6 by parsing it)."""
    try:
        fields = _endpoint(service, ipv4, ipv6, port)
    except TypeError as exc:  # unhashable garbage in an endpoint field
        raise SpanError(f"malformed endpoint: {_show((service, ipv4, ipv6, port))}") from exc
    return dict(fields) if fields else None


def tag_value(value: Any) -> str | None:
    """Tags are strings in Zipkin; numbers and booleans are kept as their JSON text, never dropped."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # nested deeper than orjson writes, or an integer past 64 bits
        raise SpanError(f"tag value cannot be stored as JSON text: {_show(value)}") from None


def normalize_span(raw: Any) -> Span:
    """Validate and canonicalise one Zipkin v2 span dict; raise ``SpanError`` naming the problem."""
    if not isinstance(raw, dict):
        raise SpanError(f"Expected a span object, got {_show(raw)}")
    if "traceId" not in raw:
        raise SpanError("Missing traceId")
    if "id" not in raw:
        raise SpanError("Missing id")
    span: Span = {"traceId": normalize_trace_id(raw["traceId"])}
    parent = raw.get("parentId")
    span_id = normalize_span_id(raw["id"])
    if parent not in (None, ""):
        parent = normalize_span_id(parent, "parentId")
        if parent != _ZERO16 and parent != span_id:
            span["parentId"] = parent
    span["id"] = span_id
    kind = raw.get("kind")
    if isinstance(kind, str):
        kind = kind.upper()
        if kind in KINDS:
            span["kind"] = kind
    name = raw.get("name")
    if name is not None:
        if not isinstance(name, str):
            raise SpanError(f"name should be a string, got {_show(name)}")
        if name:
            span["name"] = span_name(name)
    timestamp = _positive_int(raw.get("timestamp"), "timestamp")
    if timestamp:
        span["timestamp"] = timestamp
    duration = _positive_int(raw.get("duration"), "duration")
    if duration:
        span["duration"] = duration
    for key in ("localEndpoint", "remoteEndpoint"):
        endpoint = normalize_endpoint(raw.get(key))
        if endpoint:
            span[key] = endpoint
    annotations = normalize_annotations(raw.get("annotations"))
    if annotations:
        span["annotations"] = annotations
    tags = raw.get("tags")
    if tags:
        if not isinstance(tags, dict):
            raise SpanError(f"tags should be an object of strings, got {_show(tags)}")
        if _plain_tags(tags):
            span["tags"] = tags
        else:
            clean = {str(k): v for k, v in ((k, tag_value(v)) for k, v in tags.items()) if v is not None}
            if clean:
                check_tags(clean)
                span["tags"] = clean
    if raw.get("debug") is True:
        span["debug"] = True
    if raw.get("shared") is True and span.get("kind") != "CLIENT":
        span["shared"] = True
    otel = raw.get("otel")
    if otel:
        span["otel"] = otel
    return span


def _plain_tags(tags: dict) -> bool:
    """Every key and value a string within the limits, as codecs and most clients send them: kept
    as they are, checked in this one pass (``check_tags`` names the problem otherwise)."""
    if len(tags) > limits.MAX_TAGS_PER_SPAN:
        return False
    max_key, max_value = limits.MAX_TAG_KEY_CHARS, limits.MAX_TAG_VALUE_CHARS
    for key, value in tags.items():
        if type(key) is not str or type(value) is not str or len(key) > max_key or len(value) > max_value:
            return False
    return True


def _span_name(name: str) -> str:
    """A non-empty span name as stored: checked against the limit, lower-cased as Zipkin does."""
    _check(limits.name_problem(name, "name"))
    return name.lower()


span_name = _remembered(_span_name)


def check_tags(tags: dict[str, str]) -> None:
    _check(limits.tags_problem(tags))


def normalize_annotations(value: Any) -> list[dict[str, Any]]:
    if not value:
        return []
    if not isinstance(value, list):
        raise SpanError(f"annotations should be a list, got {_show(value)}")
    seen: set[tuple[int, str]] = set()
    longest = ""
    for item in value:
        if not isinstance(item, dict):
            raise SpanError(f"annotation should be an object, got {_show(item)}")
        timestamp = _positive_int(item.get("timestamp"), "annotation timestamp")
        text = item.get("value")
        if timestamp is None or not isinstance(text, str) or not text:
            raise SpanError(f"Incomplete annotation: {_show(item)}")
        seen.add((timestamp, text))
        if len(text) > len(longest):
            longest = text
    _check(limits.annotations_problem(len(seen), longest))
    return [{"timestamp": t, "value": v} for t, v in sorted(seen)]


def local_service(span: Span) -> str | None:
    endpoint = span.get("localEndpoint")
    return endpoint.get("serviceName") if endpoint else None


def remote_service(span: Span) -> str | None:
    endpoint = span.get("remoteEndpoint")
    return endpoint.get("serviceName") if endpoint else None
