"""Ingest over HTTP: Zipkin's POST /api/v2/spans and /api/v1/spans, OTLP's POST /v1/traces.

Every transport (these and OTLP/gRPC) hands decoded spans to ``Ingest.accept``. A request is
acknowledged only after its spans are committed; a request that fails anywhere stores nothing
(decoding finishes before anything is queued, and one batch is one savepoint of one commit).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from aiohttp import web

from tracebox.appliance.appkeys import INGEST, METRICS, SETTINGS, STORE
from tracebox.appliance.body import INFLIGHT, Admitted, BodyError, media_type, read_body
from tracebox.appliance.codecs import otlp
from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.model import DecodeError

Wire = str  # a name in ``prepare.DECODERS``
JSON_TYPES = ("", "application/json", "text/plain")
PROTOBUF = "application/x-protobuf"

# google.rpc.Code values for OTLP/HTTP error bodies
INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE = 3, 8, 14


def _zipkin_v2_wire(content_type: str) -> Wire:
    if content_type in JSON_TYPES:
        return "zipkin-json"
    if content_type == PROTOBUF:
        return "zipkin-proto"
    raise BodyError(415, f"Unsupported Content-Type {content_type!r}: send application/json or {PROTOBUF}")


def _zipkin_v1_wire(content_type: str) -> Wire:
    if content_type in JSON_TYPES:
        return "zipkin-v1-json"
    raise BodyError(415, f"Unsupported Content-Type {content_type!r}: /api/v1/spans takes application/json")


async def post_spans_v2(request: web.Request) -> web.Response:
    return await _zipkin(request, _zipkin_v2_wire)


async def post_spans_v1(request: web.Request) -> web.Response:
    return await _zipkin(request, _zipkin_v1_wire)


def _admit(request: web.Request) -> AbstractContextManager[Admitted]:
    """Refuse before reading the body when the writer's queue is full (its spans would be refused
    after decoding anyway) or too many bodies are in flight (limits); else hold the body's bytes."""
    settings = request.app[SETTINGS]
    if request.app[STORE].writer.pending_spans >= settings.max_pending_spans:
        raise Overloaded(retry_after=1.0)
    return INFLIGHT.admit(request.content_length, settings.max_body_bytes)


async def _zipkin(request: web.Request, pick_wire: Callable[[str], Wire]) -> web.Response:
    try:
        with _admit(request) as held:
            return await _zipkin_admitted(request, pick_wire, held)
    except Overloaded as exc:
        request.app[METRICS].count("http", messages_dropped=1)
        return _text(429, str(exc), exc.retry_after)


async def _zipkin_admitted(
    request: web.Request, pick_wire: Callable[[str], Wire], held: Admitted
) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    try:
        wire = pick_wire(media_type(request))
        body = await read_body(request, app[SETTINGS].max_body_bytes)
        held.grow_to(len(body))
        metrics.count("http", messages=1, bytes=len(body))
        await app[INGEST].accept(wire, body, "http")
    except (BodyError, DecodeError) as exc:
        metrics.count("http", messages_dropped=1)
        return _text(getattr(exc, "status", 400), str(exc))
    except Overloaded as exc:
        return _text(429, str(exc), exc.retry_after)
    except StoreUnavailable as exc:
        return _text(503, str(exc), exc.retry_after)
    return web.Response(status=202)


async def post_otlp(request: web.Request) -> web.Response:
    """OTLP/HTTP: 200 with an ExportTraceServiceResponse (partial success when spans were rejected)."""
    content_type = media_type(request)
    try:
        with _admit(request) as held:
            return await _otlp_admitted(request, content_type, held)
    except Overloaded as exc:
        request.app[METRICS].count("otlp-http", messages_dropped=1)
        return _status(content_type, 429, RESOURCE_EXHAUSTED, str(exc), exc.retry_after)


async def _otlp_admitted(request: web.Request, content_type: str, held: Admitted) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    try:
        if content_type == PROTOBUF:
            wire = "otlp-proto"
        elif content_type == "application/json":
            wire = "otlp-json"
        else:
            raise BodyError(
                415, f"Unsupported Content-Type {content_type!r}: send {PROTOBUF} or application/json"
            )
        body = await read_body(request, app[SETTINGS].max_body_bytes)
        held.grow_to(len(body))
        metrics.count("otlp-http", messages=1, bytes=len(body))
        prepared = await app[INGEST].accept(wire, body, "otlp-http")
    except (BodyError, DecodeError) as exc:
        metrics.count("otlp-http", messages_dropped=1)
        return _status(content_type, getattr(exc, "status", 400), INVALID_ARGUMENT, str(exc))
    except Overloaded as exc:
        return _status(content_type, 429, RESOURCE_EXHAUSTED, str(exc), exc.retry_after)
    except StoreUnavailable as exc:
        return _status(content_type, 503, UNAVAILABLE, str(exc), exc.retry_after)
    if prepared.rejected:
        metrics.count("otlp-http", spans_dropped=prepared.rejected)
    reply_type = "application/json" if content_type == "application/json" else PROTOBUF
    return web.Response(
        body=otlp.export_response(reply_type, prepared.rejected, prepared.error_message),
        content_type=reply_type,
    )


def _retry_headers(retry_after: float | None) -> dict[str, str] | None:
    return {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None


def _text(status: int, message: str, retry_after: float | None = None) -> web.Response:
    return web.Response(status=status, text=message, headers=_retry_headers(retry_after))


def _status(
    content_type: str, status: int, code: int, message: str, retry_after: float | None = None
) -> web.Response:
    """An OTLP error: a google.rpc.Status body in JSON for JSON requests, protobuf otherwise."""
    reply_type = "application/json" if content_type == "application/json" else PROTOBUF
    return web.Response(
        status=status,
        body=otlp.status_body(reply_type, code, message),
        content_type=reply_type,
        headers=_retry_headers(retry_after),
    )
