"""The engine's HTTP API: alerts, the engine's progress, and alert delivery (receivers, deliveries,
silences) under ``/api/tracebox/``."""

from __future__ import annotations

import orjson
from aiohttp import web

from tracebox.appliance.api import bad_request, json_response
from tracebox.appliance.appkeys import STORE
from tracebox.detectors import alert_store
from tracebox.detectors.notify import Notifier
from tracebox.detectors.notify.config import parse_duration
from tracebox.detectors.runner import EngineRunner

RUNNER = web.AppKey("engine_runner", EngineRunner)
NOTIFIER = web.AppKey("notifier", Notifier)
MAX_SILENCE_S = 366 * 86_400
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


async def receivers(request: web.Request) -> web.Response:
    """Configured receivers, with secrets left out and URLs cut to their host."""
    return json_response(orjson.dumps(request.app[NOTIFIER].receivers()))


async def deliveries(request: web.Request) -> web.Response:
    limit = _int(request, "limit") or 100
    if not 0 < limit <= 10_000:
        raise bad_request("limit should be between 1 and 10000")
    found = await request.app[NOTIFIER].deliveries(
        receiver=request.query.get("receiver") or None,
        state=request.query.get("state") or None,
        alert_id=request.query.get("alertId") or None,
        limit=limit,
    )
    return json_response(orjson.dumps(found))


async def delivery_attempts(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(await request.app[NOTIFIER].attempts(request.match_info["deliveryId"])))


async def list_silences(request: web.Request) -> web.Response:
    include_expired = request.query.get("expired", "").lower() in ("1", "true", "yes")
    return json_response(orjson.dumps(await request.app[NOTIFIER].list_silences(include_expired)))


async def create_silence(request: web.Request) -> web.Response:
    """``{"matchers": ["service=checkout"], "duration": "2h", "comment": "...", "createdBy": "..."}``."""
    try:
        body = await request.json(loads=orjson.loads)
    except ValueError:
        raise bad_request("send a JSON object: {matchers: [...], duration: '2h', comment: '...'}") from None
    if not isinstance(body, dict) or not isinstance(body.get("matchers"), list) or not body["matchers"]:
        raise bad_request(
            'matchers should be a non-empty list such as ["service=checkout", "kind=~latency|error"]'
        )
    try:
        duration = parse_duration(body.get("duration", "1h"))
    except ValueError:
        raise bad_request(f"duration should look like 30m, 2h or 1d, got {body.get('duration')!r}") from None
    if not 0 < duration <= MAX_SILENCE_S:
        raise bad_request("duration should be more than 0 and at most a year")
    try:
        silence = await request.app[NOTIFIER].create_silence(
            [str(m) for m in body["matchers"]],
            duration=duration,
            created_by=str(body.get("createdBy", ""))[:200],
            comment=str(body.get("comment", ""))[:2000],
        )
    except ValueError as exc:
        raise bad_request(f"bad silence: {exc}") from None
    now_us = silence.starts_at_us
    return web.Response(
        status=201, body=orjson.dumps(silence.to_json(now_us)), content_type="application/json"
    )


async def expire_silence(request: web.Request) -> web.Response:
    silence_id = request.match_info["silenceId"]
    if not await request.app[NOTIFIER].expire_silence(silence_id):
        raise web.HTTPNotFound(text=f"silence {silence_id[:64]} not found or already expired")
    return web.Response(status=204)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/tracebox/alerts", list_alerts)
    app.router.add_get("/api/tracebox/alerts/{alertId}", get_alert)
    app.router.add_get("/api/tracebox/engine", engine_status)
    app.router.add_get("/api/tracebox/engine/baselines", baselines)
    app.router.add_get("/api/tracebox/receivers", receivers)
    app.router.add_get("/api/tracebox/deliveries", deliveries)
    app.router.add_get("/api/tracebox/deliveries/{deliveryId}/attempts", delivery_attempts)
    app.router.add_get("/api/tracebox/silences", list_silences)
    app.router.add_post("/api/tracebox/silences", create_silence)
    app.router.add_delete("/api/tracebox/silences/{silenceId}", expire_silence)
