"""Operations endpoints: /health, /info, /prometheus, /metrics and Zipkin UI's config.json."""

from __future__ import annotations

import orjson
from aiohttp import web

from tracebox.appliance import __version__
from tracebox.appliance.appkeys import METRICS, SETTINGS, STORE
from tracebox.appliance.store import queries


async def health(request: web.Request) -> web.Response:
    store = request.app[STORE]
    problem = store.usable()
    if problem is None:
        try:
            await store.read(queries.ping)
        except Exception as exc:  # the database file is gone or unreadable
            problem = f"database unreadable: {exc}"
    status = "UP" if problem is None else "DOWN"
    details = {"status": status, "details": {"db": str(store.path)}}
    if problem:
        details["details"]["error"] = problem
    body = {"status": status, "zipkin": {"status": status, "details": {"SQLiteStorage": details}}}
    return web.Response(
        body=orjson.dumps(body), status=200 if problem is None else 503, content_type="application/json"
    )


async def info(request: web.Request) -> web.Response:
    body = {"zipkin": {"version": "2.24.0"}, "tracebox": {"version": __version__}}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def prometheus(request: web.Request) -> web.Response:
    return web.Response(text=request.app[METRICS].prometheus(), content_type="text/plain", charset="utf-8")


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=orjson.dumps(request.app[METRICS].snapshot()), content_type="application/json")


async def ui_config(request: web.Request) -> web.Response:
    """What Zipkin's own UI (Lens) reads at start, so it can be served against this API."""
    settings = request.app[SETTINGS]
    body = {
        "environment": "",
        "queryLimit": 10,
        "defaultLookback": min(settings.lookback, 900_000),
        "searchEnabled": settings.search_enabled,
        "logsUrl": None,
        "supportUrl": None,
        "archivePostUrl": None,
        "archiveUrl": None,
        "dependency": {"enabled": True, "lowErrorRate": 0.5, "highErrorRate": 0.75},
    }
    return web.Response(body=orjson.dumps(body), content_type="application/json")


def add_routes(app: web.Application) -> None:
    app.router.add_get("/health", health)
    app.router.add_get("/actuator/health", health)
    app.router.add_get("/info", info)
    app.router.add_get("/actuator/info", info)
    app.router.add_get("/prometheus", prometheus)
    app.router.add_get("/actuator/prometheus", prometheus)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/zipkin/config.json", ui_config)
