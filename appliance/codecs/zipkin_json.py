"""Zipkin v2 JSON (``application/json`` on ``POST /api/v2/spans``) in and out."""

from __future__ import annotations

from collections.abc import Iterable

import orjson

from tracebox.appliance.model import DecodeError, Span, check_span_count, normalize_span


def read_span_list(body: bytes, encoding: str) -> list:
    """The JSON list a Zipkin JSON body holds, with Zipkin's messages when it is not one."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"Malformed reading List<Span> from json: {exc}") from None
    if not isinstance(data, list):
        raise DecodeError(f"Expected a {encoding} encoded list")
    check_span_count(len(data))
    return data


def decode_v2(body: bytes) -> list[Span]:
    """Parse a JSON list of v2 spans; an empty list is valid (Zipkin answers 202 to ``[]``)."""
    return [normalize_span(item) for item in read_span_list(body, "JSON_V2")]


def encode_spans(spans: Iterable[Span]) -> bytes:
    """The JSON list the query API answers with; OTLP extras are not part of Zipkin's shape."""
    return orjson.dumps([_zipkin_view(span) for span in spans])


def _zipkin_view(span: Span) -> Span:
    if "otel" not in span:
        return span
    return {k: v for k, v in span.items() if k != "otel"}
