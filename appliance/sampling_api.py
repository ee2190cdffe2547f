"""Sampling's HTTP side: ``/api/tracebox/sampling`` (seen vs kept, active policies) and Jaeger's
remote-sampling API (``GET /api/sampling?service=NAME`` as the Jaeger collector serves it,
``GET /sampling?service=NAME`` as the Jaeger agent did; OpenTelemetry's JavaScript sampler appends
``/sampling`` to its endpoint, Go's and Rust's default to the agent's path).
"""

from __future__ import annotations

import orjson
from aiohttp import web

from tracebox.appliance.adaptive_sampling import AdaptiveSampler
from tracebox.appliance.api import bad_request, json_response
from tracebox.appliance.background import with_server
from tracebox.appliance.config import Settings
from tracebox.appliance.sampling_config import SamplingConfig
from tracebox.appliance.store import Store
from tracebox.appliance.store import sampling as db
from tracebox.appliance.tail_sampling import TailSampler

SAMPLER = web.AppKey("tracebox.sampling", TailSampler)


def setup(app: web.Application, settings: Settings, store: Store) -> TailSampler:
    """Parse ``[sampling]``, add the routes, and run the sampler with the app when it has work."""
    config = SamplingConfig.from_section(settings.sections.get("sampling"))
    adaptive = AdaptiveSampler(config.adaptive, head_rate=settings.sample_rate)
    sampler = app[SAMPLER] = TailSampler(
        store, config, engine=settings.engine, adaptive=adaptive if config.adaptive.enabled else None
    )
    sampler.strategies = adaptive  # the endpoint serves the fixed default when not adaptive
    app.router.add_get("/api/tracebox/sampling", overview)
    app.router.add_get("/api/sampling", strategy)
    app.router.add_get("/sampling", strategy)
    app.router.add_get("/sampling-report", report_page)
    if config.enabled or config.adaptive.enabled:
        with_server(app, sampler.start, sampler.stop)
    return sampler


async def strategy(request: web.Request) -> web.Response:
    service = request.query.get("service", "").strip().lower()
    if not service:
        raise bad_request("'service' parameter must be provided")
    body = request.app[SAMPLER].strategies.strategy(service)
    return json_response(orjson.dumps(body))


async def report_page(request: web.Request) -> web.Response:
    """The UI's page: seen vs kept per service, why traces were kept, what the SDKs are served."""
    from tracebox.web.routes import render  # the UI imports the server's parts, not the reverse

    return await render(request, "sampling.html", title="Sampling", state=await summary(request.app))


async def overview(request: web.Request) -> web.Response:
    return json_response(orjson.dumps(await summary(request.app)))


async def summary(app: web.Application) -> dict:
    """What the API and the UI show: policies, per-service seen/kept, the sampler's progress."""
    sampler = app[SAMPLER]
    counts = await sampler.store.read(db.counters)
    return {
        "enabled": sampler.config.enabled,
        "policies": sampler.config.describe(),
        **counts,
        "status": sampler.status(),
        "adaptive": sampler.strategies.describe(),
    }
