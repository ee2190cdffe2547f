"""Limits on hostile or runaway input, in one place.

Each limit refuses rather than truncates: a span over a limit is a ``SpanError`` (400 on the Zipkin
endpoints, a partial-success rejection on OTLP), a request over one a 413 (``model.TooManySpans``),
a query parameter over one a 400, each with a message naming the limit. The functions here only
name the problem (``None`` when there is none), so this module imports nothing of tracebox.

The values are generous for real instrumentation (OpenTelemetry SDKs default to 128 attributes and
128 events per span; Zipkin reporters send batches of at most a few thousand spans) and small
enough that one request cannot cost more than a bounded amount of memory and disk.

Two timeouts protect the server from slow or half-open clients; the environment variables exist
for tests and for unusual networks:

- ``TRACEBOX_BODY_READ_TIMEOUT`` (seconds, default 30): the whole request body must arrive
  within this time once the handler starts reading it; a client that stalls mid-body gets a 408.
- ``TRACEBOX_IDLE_TIMEOUT`` (seconds, default 75): a connection that sends no complete request
  (half-sent headers, or idle keep-alive) is closed after this time.

And one budget bounds memory at any offered load, whatever the number of connections:

- ``TRACEBOX_MAX_INFLIGHT_BYTES`` (default 32 MiB): the request bodies being read, decoded or
  waiting for their commit, together; past it ingest answers 429 with ``Retry-After`` before
  reading the body (one request is always admitted, however large, up to ``--max-body-bytes``).
"""

from __future__ import annotations

import os


def _env_seconds(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


#: Spans in one request, any format (a v1 span that splits into several counts once per v2 span).
MAX_SPANS_PER_REQUEST = 50_000
#: Tags (attributes) on one span, and the size of each key and value, in characters.
MAX_TAGS_PER_SPAN = 1_024
MAX_TAG_KEY_CHARS = 1_024
MAX_TAG_VALUE_CHARS = 1 << 20  # prompts and payloads can be large; the body limit bounds the total
#: Annotations (OTLP events) on one span, and the size of each value.
MAX_ANNOTATIONS_PER_SPAN = 1_024
MAX_ANNOTATION_CHARS = 256 * 1024  # an exception event with its stack trace fits
#: Span names and service names.
MAX_NAME_CHARS = 4_096
#: One query parameter's value (service and span names, annotationQuery, trace ids...).
MAX_QUERY_PARAM_CHARS = 4_096

MAX_INFLIGHT_BYTES = int(_env_seconds("TRACEBOX_MAX_INFLIGHT_BYTES", 32 * 1024 * 1024))
BODY_READ_TIMEOUT_S = _env_seconds("TRACEBOX_BODY_READ_TIMEOUT", 30.0)
IDLE_TIMEOUT_S = _env_seconds("TRACEBOX_IDLE_TIMEOUT", 75.0)


def span_count_problem(count: int) -> str | None:
    if count > MAX_SPANS_PER_REQUEST:
        return (
            f"request has {count} spans, more than the limit of {MAX_SPANS_PER_REQUEST}; send smaller batches"
        )
    return None


def name_problem(value: str, field: str) -> str | None:
    if len(value) > MAX_NAME_CHARS:
        return f"{field} has {len(value)} characters, more than the limit of {MAX_NAME_CHARS}"
    return None


def tags_problem(tags: dict[str, str]) -> str | None:
    if len(tags) > MAX_TAGS_PER_SPAN:
        return f"span has {len(tags)} tags, more than the limit of {MAX_TAGS_PER_SPAN}"
    for key, value in tags.items():
        if len(key) > MAX_TAG_KEY_CHARS:
            return f"tag key {key[:40]!r}... has {len(key)} characters, more than the limit of {MAX_TAG_KEY_CHARS}"
        if len(value) > MAX_TAG_VALUE_CHARS:
            return (
                f"tag {key[:40]!r} has a value of {len(value)} characters, more than the limit of "
                f"{MAX_TAG_VALUE_CHARS}"
            )
    return None


def annotations_problem(count: int, longest: str) -> str | None:
    if count > MAX_ANNOTATIONS_PER_SPAN:
        return f"span has {count} annotations, more than the limit of {MAX_ANNOTATIONS_PER_SPAN}"
    if len(longest) > MAX_ANNOTATION_CHARS:
        return (
            f"annotation {longest[:40]!r}... has {len(longest)} characters, more than the limit of "
            f"{MAX_ANNOTATION_CHARS}"
        )
    return None


def query_param_problem(key: str, value: str) -> str | None:
    if len(value) > MAX_QUERY_PARAM_CHARS:
        return f"{key} has {len(value)} characters, more than the limit of {MAX_QUERY_PARAM_CHARS}"
    return None
