"""A trace search, parsed and validated once; the API and the UI both hand it to the store.

Semantics follow Zipkin's ``QueryRequest``: ``serviceName`` scopes the other conditions to that
service's spans; the conditions may be met by different spans of the trace; ``annotationQuery``
is ``term and term ...`` where ``key=value`` needs a tag with that exact value and a bare ``key``
matches a tag of that key with any value or an annotation with that text.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from tracebox.appliance import limits
from tracebox.appliance.model import Span

DEFAULT_LIMIT = 10
DEFAULT_LOOKBACK_MS = 86_400_000
MAX_LIMIT = 10_000
MAX_ANNOTATION_TERMS = 32
#: The latest endTs whose microseconds still fit SQLite's 64-bit integers; later ones are clamped.
MAX_END_TS_MS = (2**63 - 1) // 1000


class QueryError(ValueError):
    """A search parameter that is missing or wrong; the message is the 400 body."""


@dataclass(frozen=True, slots=True)
class QueryRequest:
    end_ts: int  # epoch milliseconds, like Zipkin
    lookback: int  # milliseconds
    limit: int = DEFAULT_LIMIT
    service_name: str | None = None
    remote_service_name: str | None = None
    span_name: str | None = None
    annotation_query: dict[str, str] = field(default_factory=dict)
    min_duration: int | None = None  # microseconds
    max_duration: int | None = None

    @property
    def window_us(self) -> tuple[int, int]:
        """Inclusive span-timestamp bounds in microseconds."""
        return (self.end_ts - self.lookback) * 1000, self.end_ts * 1000

    @classmethod
    def from_params(
        cls, params: Mapping[str, str], default_lookback: int = DEFAULT_LOOKBACK_MS
    ) -> QueryRequest:
        for key, value in params.items():
            problem = limits.query_param_problem(key, value)
            if problem:
                raise QueryError(problem)
        end_ts = _int(params, "endTs")
        if end_ts is None:
            end_ts = int(time.time() * 1000)
        elif end_ts <= 0:
            raise QueryError("endTs <= 0")
        end_ts = min(end_ts, MAX_END_TS_MS)
        lookback = _int(params, "lookback")
        if lookback is None:
            lookback = default_lookback
        elif lookback <= 0:
            raise QueryError("lookback <= 0")
        limit = _int(params, "limit")
        if limit is None:
            limit = DEFAULT_LIMIT
        elif limit <= 0:
            raise QueryError("limit <= 0")
        min_duration = _int(params, "minDuration")
        max_duration = _int(params, "maxDuration")
        if min_duration is not None:
            if min_duration <= 0:
                raise QueryError("minDuration <= 0")
            if max_duration is not None and max_duration < min_duration:
                raise QueryError("maxDuration < minDuration")
        elif max_duration is not None:
            raise QueryError("maxDuration is only valid with minDuration")
        span_name = _name(params, "spanName")
        return cls(
            end_ts=end_ts,
            lookback=min(lookback, end_ts),
            limit=min(limit, MAX_LIMIT),
            service_name=_name(params, "serviceName"),
            remote_service_name=_name(params, "remoteServiceName"),
            span_name=None if span_name == "all" else span_name,
            annotation_query=parse_annotation_query(params.get("annotationQuery")),
            min_duration=min_duration,
            max_duration=max_duration,
        )

    def matches(self, spans: Iterable[Span]) -> bool:
        """Zipkin's test of one whole trace against every condition but the time window."""
        service = self.service_name
        span_name = self.span_name
        remote = self.remote_service_name
        remaining = dict(self.annotation_query)
        duration_ok = self.min_duration is None
        service_seen = service is None
        for span in spans:
            local = span.get("localEndpoint")
            if service is not None:
                if not local or local.get("serviceName") != service:
                    continue
                service_seen = True
            if span_name is not None and span.get("name") == span_name:
                span_name = None
            if remote is not None:
                remote_endpoint = span.get("remoteEndpoint")
                if remote_endpoint and remote_endpoint.get("serviceName") == remote:
                    remote = None
            if remaining:
                for annotation in span.get("annotations", ()):
                    if remaining.get(annotation["value"]) == "":
                        del remaining[annotation["value"]]
                for key, value in span.get("tags", {}).items():
                    wanted = remaining.get(key)
                    if wanted is not None and (wanted == "" or wanted == value):
                        del remaining[key]
            if not duration_ok:
                duration = span.get("duration")
                duration_ok = (
                    duration is not None
                    and duration >= self.min_duration
                    and (self.max_duration is None or duration <= self.max_duration)
                )
        return service_seen and span_name is None and remote is None and not remaining and duration_ok


def parse_annotation_query(text: str | None) -> dict[str, str]:
    """``"error and http.method=GET"`` → ``{"error": "", "http.method": "GET"}``."""
    if not text:
        return {}
    terms: dict[str, str] = {}
    for term in text.split(" and "):
        term = term.strip()
        if not term:
            continue
        key, sep, value = term.partition("=")
        key = key.strip()
        if not key:
            raise QueryError(f"annotationQuery term has no key: {term!r}")
        terms[key] = value if sep else ""
        if len(terms) > MAX_ANNOTATION_TERMS:
            raise QueryError(f"annotationQuery has more than {MAX_ANNOTATION_TERMS} terms")
    return terms


def _int(params: Mapping[str, str], key: str) -> int | None:
    raw = params.get(key)
    if raw is None or raw == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        raise QueryError(f"{key} should be an integer, got {raw[:40]!r}") from None
    if not -(2**63) <= value < 2**63:
        raise QueryError(f"{key} is out of range")
    return value


def _name(params: Mapping[str, str], key: str) -> str | None:
    raw = params.get(key)
    return raw.lower() if raw else None
