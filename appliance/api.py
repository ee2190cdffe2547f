"""Zipkin's v2 query API (``/api/v2/*``, also under ``/zipkin/api/v2/*``) over the store."""

from __future__ import annotations

import orjson
from aiohttp import web

from tracebox.appliance.appkeys import SETTINGS, STORE
from tracebox.appliance.codecs.zipkin_json import encode_spans
from tracebox.appliance.linker import DependencyLinker
from tracebox.appliance.model import SpanError, normalize_trace_id
from tracebox.appliance.query import QueryError, QueryRequest
from tracebox.appliance.store import queries
from tracebox.appliance.store.dependencies import window_links

#: Name lists change slowly; Zipkin lets browsers cache them for five minutes too.
NAMES_CACHE = {"Cache-Control": "max-age=300, must-revalidate"}


def json_response(body: bytes, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=body, content_type="application/json", headers=headers)


def bad_request(message: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(text=message)


def time_window(request: web.Request) -> tuple[int, int]:
    """The request's ``endTs``/``lookback`` (ms, Zipkin's defaults and checks) as inclusive µs bounds."""
    params = request.query
    try:
        window = QueryRequest.from_params(
            {"endTs": params.get("endTs", ""), "lookback": params.get("lookback", "")},
            request.app[SETTINGS].lookback,
        )
    except QueryError as exc:
        raise bad_request(str(exc)) from None
    return window.window_us


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise bad_request(f"{name} is required")
    return value


def parse_trace_id(raw: str) -> str:
    try:
        return normalize_trace_id(raw)
    except SpanError:
        raise bad_request(
            f"{raw[:64]} should be a 1 to 32 character lower-hex string with no prefix"
        ) from None


async def services(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    names = await store.read(queries.service_names) if settings.search_enabled else []
    return json_response(orjson.dumps(names), NAMES_CACHE)


async def span_names(request: web.Request) -> web.Response:
    service = _required(request, "serviceName")
    settings, store = request.app[SETTINGS], request.app[STORE]
    names = await store.read(queries.span_names, service) if settings.search_enabled else []
    return json_response(orjson.dumps(names), NAMES_CACHE)


async def remote_services(request: web.Request) -> web.Response:
    service = _required(request, "serviceName")
    settings, store = request.app[SETTINGS], request.app[STORE]
    names = await store.read(queries.remote_service_names, service) if settings.search_enabled else []
    return json_response(orjson.dumps(names), NAMES_CACHE)


async def traces(request: web.Request) -> web.Response:
    settings, store = request.app[SETTINGS], request.app[STORE]
    try:
        query = QueryRequest.from_params(request.query, settings.lookback)
    except QueryError as exc:
        raise bad_request(str(exc)) from None
    if not settings.search_enabled:
        return json_response(b"[]")
    found = await store.read(queries.get_traces, query, settings.strict_trace_id)
    return json_response(_encode_traces(found))


async def trace(request: web.Request) -> web.Response:
    raw = request.match_info["traceId"]
    trace_id = parse_trace_id(raw)
    settings, store = request.app[SETTINGS], request.app[STORE]
    spans = await store.read(queries.get_trace, trace_id, settings.strict_trace_id)
    if not spans:
        raise web.HTTPNotFound(text=f"{raw} not found")
    return json_response(encode_spans(spans))


async def trace_many(request: web.Request) -> web.Response:
    raw = request.query.get("traceIds", "")
    ids = [part.strip() for part in raw.split(",") if part.strip()]
    if not ids:
        raise bad_request("traceIds parameter is empty")
    if len(ids) > 1000:
        raise bad_request("traceIds has more than 1000 ids")
    normalized = list(dict.fromkeys(parse_trace_id(i) for i in ids))
    settings, store = request.app[SETTINGS], request.app[STORE]
    found = await store.read(queries.get_many, normalized, settings.strict_trace_id)
    return json_response(_encode_traces(found))


async def dependencies(request: web.Request) -> web.Response:
    _required(request, "endTs")
    links = await request.app[STORE].read(window_links, *time_window(request))
    return json_response(orjson.dumps(links))


def _link(conn, lo_us: int, hi_us: int) -> list[dict]:
    """Every trace of the window linked on the spot: what ``window_links`` must equal."""
    linker = DependencyLinker()
    for spans in queries.dependency_spans(conn, lo_us, hi_us):
        linker.put_trace(spans)
    return linker.links()


async def autocomplete_keys(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(request.app[SETTINGS].autocomplete_key_list))


async def autocomplete_values(request: web.Request) -> web.Response:
    key = _required(request, "key")
    values = await request.app[STORE].read(queries.autocomplete_values, key)
    return json_response(orjson.dumps(values))


def _encode_traces(found: list[list[dict]]) -> bytes:
    return b"[" + b",".join(encode_spans(t) for t in found) + b"]"


def add_routes(app: web.Application, prefix: str) -> None:
    routes = [
        ("/services", services),
        ("/spans", span_names),
        ("/remoteServices", remote_services),
        ("/traces", traces),
        ("/trace/{traceId}", trace),
        ("/traceMany", trace_many),
        ("/dependencies", dependencies),
        ("/autocompleteKeys", autocomplete_keys),
        ("/autocompleteValues", autocomplete_values),
    ]
    for path, handler in routes:
        app.router.add_get(prefix + path, handler)
