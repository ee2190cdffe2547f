"""Trace insights over HTTP: ``/api/tracebox/traces/{traceId}/insights`` (one trace's findings),
``/api/tracebox/insights`` (pattern counts per operation and hour) and the rollup that fills
those counts and raises ``pattern`` alerts, started with the server when the engine is on."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from aiohttp import web

from tracebox.appliance.api import bad_request, json_response, parse_trace_id, time_window
from tracebox.appliance.appkeys import SETTINGS, STORE
from tracebox.appliance.background import with_server
from tracebox.appliance.insights import PATTERNS, kinds_of
from tracebox.appliance.insights import store as istore
from tracebox.appliance.insights.rollup import InsightRollup

ROLLUP = web.AppKey("tracebox.insights.rollup", InsightRollup)


async def trace_insights(request: web.Request) -> web.Response:
    trace_id = parse_trace_id(request.match_info["traceId"])
    strict = request.app[SETTINGS].strict_trace_id
    spans, findings = await request.app[STORE].read(istore.trace_insights, trace_id, strict)
    if not spans:
        raise web.HTTPNotFound(text=f"trace {trace_id} not found")
    body = {
        "traceId": spans[0]["traceId"],
        "spanCount": len(spans),
        "patterns": kinds_of(findings),
        "findings": [f.to_json() for f in findings],
    }
    return json_response(orjson.dumps(body))


async def aggregates(request: web.Request) -> web.Response:
    params = request.query
    kind = params.get("kind") or None
    if kind is not None and kind not in PATTERNS:
        raise bad_request(f"kind should be one of {', '.join(PATTERNS)}, got {kind[:40]!r}")
    lo, hi = time_window(request)
    service = (params.get("serviceName") or "").lower() or None
    rows = await request.app[STORE].read(
        istore.aggregates, lo, hi, service, kind, params.get("spanName") or params.get("operation") or None
    )
    return json_response(orjson.dumps(rows))


async def status(request: web.Request) -> web.Response:
    rollup = request.app.get(ROLLUP)
    return json_response(orjson.dumps(rollup.status() if rollup else {"running": False}))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tracebox/traces/{traceId}/insights", trace_insights)
    app.router.add_get("/api/tracebox/insights", aggregates)
    app.router.add_get("/api/tracebox/insights/status", status)
    settings = app[SETTINGS]
    if not settings.engine:
        return

    from tracebox.detectors.http import NOTIFIER, RUNNER

    async def beside(fn: Callable[..., Any], *args: Any) -> Any:  # in the engine's process
        return await app[RUNNER].run_beside(fn, *args)

    async def notify(changes: list) -> None:  # pattern alerts go out like the engine's
        await app[NOTIFIER].submit(changes)

    rollup = app[ROLLUP] = InsightRollup(
        app[STORE],
        beside,
        strict=settings.strict_trace_id,
        on_changes=notify,
        spans_per_s=settings.insights_spans_per_second,
    )

    with_server(app, rollup.start, rollup.stop)
