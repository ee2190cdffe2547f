"""The engine's HTTP API: ``/api/tracebox/alerts``, ``/api/tracebox/alerts/{id}``, ``/api/tracebox/engine``."""

from __future__ import annotations

import orjson
from aiohttp import web

from tracebox.appliance.api import bad_request, json_response
from tracebox.appliance.appkeys import STORE
from tracebox.detectors import alert_store
from tracebox.detectors.runner import EngineRunner

RUNNER = web.AppKey("engine_runner", EngineRunner)
KINDS = ("latency", "error", "token_cost", "finish_reason", "pattern")
STATUSES = ("firing", "resolved")


def _int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise bad_request(
            f"{name} should be an integer (epoch microseconds for start/end), got {raw[:40]!r}"
        ) from None


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    value = request.query.get(name) or None
    if value is not None and value not in allowed:
        raise bad_request(f"{name} should be one of {', '.join(allowed)}, got {value[:40]!r}")
    return value


async def list_alerts(request: web.Request) -> web.Response:
    limit = _int(request, "limit") or 100
    if not 0 < limit <= 10_000:
        raise bad_request("limit should be between 1 and 10000")
    alerts = await request.app[STORE].read(
        alert_store.list_alerts,
        _choice(request, "status", STATUSES),
        _choice(request, "kind", KINDS),
        (request.query.get("service") or "").lower() or None,
        _int(request, "start"),
        _int(request, "end"),
        limit,
    )
    return json_response(orjson.dumps(alerts))


async def get_alert(request: web.Request) -> web.Response:
    alert_id = request.match_info["alertId"]
    alert = await request.app[STORE].read(alert_store.get_alert, alert_id)
    if alert is None:
        raise web.HTTPNotFound(text=f"alert {alert_id[:64]} not found")
    return json_response(orjson.dumps(alert))


async def engine_status(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(await request.app[RUNNER].status()))


async def baselines(request: web.Request) -> web.Response:
    return json_response(
        orjson.dumps(await request.app[RUNNER].baselines(), option=orjson.OPT_SERIALIZE_NUMPY)
    )


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tracebox/alerts", list_alerts)
    app.router.add_get("/api/tracebox/alerts/{alertId}", get_alert)
    app.router.add_get("/api/tracebox/engine", engine_status)
    app.router.add_get("/api/tracebox/engine/baselines", baselines)
