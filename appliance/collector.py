"""Ingest over HTTP: Zipkin's POST /api/v2/spans and /api/v1/spans.

A request is answered 202 only after its spans are committed; a request that fails anywhere is
stored not at all (decoding happens before anything is queued, and one batch is one savepoint).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web

from tracebox.appliance.appkeys import METRICS, SAMPLER, SETTINGS, STORE
from tracebox.appliance.body import BodyError, media_type, read_body
from tracebox.appliance.codecs.zipkin_json import decode_v2
from tracebox.appliance.codecs.zipkin_proto import decode_proto
from tracebox.appliance.codecs.zipkin_v1 import decode_v1
from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.model import DecodeError, Span

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], list[Span]]
JSON_TYPES = ("", "application/json", "text/plain")



def _v2_decoder(content_type: str) -> Decoder:
    if content_type in JSON_TYPES:
        return decode_v2
    if content_type == "application/x-protobuf":
        return decode_proto
    raise BodyError(415, f"Unsupported Content-Type {content_type!r}: send application/json or application/x-protobuf")


def _v1_decoder(content_type: str) -> Decoder:
    if content_type in JSON_TYPES:
        return decode_v1
    raise BodyError(415, f"Unsupported Content-Type {content_type!r}: /api/v1/spans takes application/json")


async def post_spans_v2(request: web.Request) -> web.Response:
    return await _ingest(request, _v2_decoder)


async def post_spans_v1(request: web.Request) -> web.Response:
    return await _ingest(request, _v1_decoder)


async def _ingest(request: web.Request, pick_decoder: Callable[[str], Decoder]) -> web.Response:
    app = request.app
    metrics = app[METRICS]
    try:
        decoder = pick_decoder(media_type(request))
        body = await read_body(request, app[SETTINGS].max_body_bytes)
        metrics.count("http", messages=1, bytes=len(body))
        spans = decoder(body)
    except BodyError as exc:
        metrics.count("http", messages_dropped=1)
        return error_response(exc.status, str(exc))
    except DecodeError as exc:
        metrics.count("http", messages_dropped=1)
        return error_response(400, str(exc))
    kept = app[SAMPLER].sample(spans)
    metrics.count("http", spans=len(spans), spans_dropped=len(spans) - len(kept))
    try:
        await accept(app, kept)
    except Overloaded as exc:
        metrics.count("http", messages_dropped=1, spans_dropped=len(kept))
        return error_response(429, str(exc), retry_after=exc.retry_after)
    except StoreUnavailable as exc:
        metrics.count("http", messages_dropped=1, spans_dropped=len(kept))
        return error_response(503, str(exc), retry_after=exc.retry_after)
    return web.Response(status=202)


async def accept(app: web.Application, spans: list[Span]) -> None:
    """Store spans durably; the one path every transport goes through."""
    if spans:
        await app[STORE].write_spans(spans)


def error_response(status: int, message: str, retry_after: float | None = None) -> web.Response:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return web.Response(status=status, text=message, headers=headers)
