"""tracebox's own API for LLM usage, beside Zipkin's: ``/api/tracebox/llm/*`` (JSON)."""

from __future__ import annotations

import orjson
from aiohttp import web

from tracebox.appliance.api import bad_request, json_response, parse_trace_id, time_window
from tracebox.appliance.appkeys import STORE
from tracebox.appliance.store import llm

MAX_BUCKETS = 2000


def window(request: web.Request) -> llm.LlmWindow:
    """endTs/lookback (milliseconds, Zipkin's defaults) plus optional serviceName and model filters."""
    lo, hi = time_window(request)
    params = request.query
    return llm.LlmWindow(lo, hi, params.get("serviceName", "").lower() or None, params.get("model") or None)


def _group_by(request: web.Request) -> str:
    group_by = request.query.get("groupBy", "model")
    try:
        llm.group_expression(group_by)
    except ValueError as exc:
        raise bad_request(str(exc)) from None
    return group_by


def _positive(request: web.Request, name: str, default: int) -> int:
    raw = request.query.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise bad_request(f"{name} should be an integer, got {raw[:40]!r}") from None
    if value <= 0:
        raise bad_request(f"{name} <= 0")
    return value


async def usage(request: web.Request) -> web.Response:
    rows = await request.app[STORE].read(llm.usage, window(request), _group_by(request))
    return json_response(orjson.dumps(rows))


async def timeseries(request: web.Request) -> web.Response:
    win = window(request)
    interval_ms = _positive(request, "interval", max(60_000, (win.hi - win.lo) // 1000 // 60))
    if (win.hi - win.lo) // (interval_ms * 1000) > MAX_BUCKETS:
        raise bad_request(f"interval too small: more than {MAX_BUCKETS} buckets")
    rows = await request.app[STORE].read(llm.usage_over_time, win, interval_ms * 1000, _group_by(request))
    return json_response(orjson.dumps(rows))


async def finish_reasons(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(await request.app[STORE].read(llm.finish_reasons, window(request))))


async def ttft(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(await request.app[STORE].read(llm.ttft, window(request))))


async def top_traces(request: web.Request) -> web.Response:
    limit = min(_positive(request, "limit", 10), 1000)
    rows = await request.app[STORE].read(llm.top_traces, window(request), limit)
    return json_response(orjson.dumps(rows))


async def trace_usage(request: web.Request) -> web.Response:
    trace_id = parse_trace_id(request.match_info["traceId"])
    return json_response(orjson.dumps(await request.app[STORE].read(llm.trace_usage, trace_id)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tracebox/llm/usage", usage)
    app.router.add_get("/api/tracebox/llm/timeseries", timeseries)
    app.router.add_get("/api/tracebox/llm/finish-reasons", finish_reasons)
    app.router.add_get("/api/tracebox/llm/ttft", ttft)
    app.router.add_get("/api/tracebox/llm/top-traces", top_traces)
    app.router.add_get("/api/tracebox/traces/{traceId}/llm", trace_usage)
