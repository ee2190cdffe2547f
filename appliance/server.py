"""Assembling and running the server: one process, one event loop, the writer thread beside it."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable
from functools import partial

from aiohttp import web

from tracebox.appliance import api, collector, insights_api, limits, llm_api, ops, sampling_api
from tracebox.appliance.appkeys import INGEST, METRICS, SETTINGS, STORE
from tracebox.appliance.auth import Credentials, auth_middleware, grpc_authorized
from tracebox.appliance.background import run_with_server, with_server
from tracebox.appliance.config import ConfigError, Settings
from tracebox.appliance.dependency_task import add_dependency_task
from tracebox.appliance.ingest import Ingest
from tracebox.appliance.metrics import Metrics
from tracebox.appliance.otlp_grpc import start_grpc_server
from tracebox.appliance.prepare import PreparePool, PrepareSettings, default_processes
from tracebox.appliance.redaction import parse_rules
from tracebox.appliance.selftrace import self_tracing_middleware
from tracebox.appliance.store import Store, blobs
from tracebox.appliance.store.retention import Retention
from tracebox.web import routes as web_routes

log = logging.getLogger("tracebox")

CORS_HEADERS = "Content-Type, Content-Encoding, Authorization, b3, traceparent, tracestate"


def open_store(settings: Settings) -> Store:
    return Store(settings.db, fsync=settings.fsync, max_pending_spans=settings.max_pending_spans)


def prepare_pool(app: web.Application, settings: Settings, store: Store) -> PreparePool:
    """The ingest pipeline's workers (see ``prepare``), started and stopped with the server; the
    store builds the rows of spans tracebox makes itself with the same pipeline."""
    prepare = PrepareSettings(
        sample_rate=settings.sample_rate,
        redactor=parse_rules(settings.sections.get("redact"), salt=store.instance_secret),
        autocomplete_keys=frozenset(settings.autocomplete_key_list),
        prices=settings.sections.get("prices"),
    )
    processes = settings.ingest_processes if settings.ingest_processes >= 0 else default_processes()
    pool = PreparePool(prepare, processes)
    store.prepare = pool.local.rows
    with_server(app, pool.warm_up, pool.close)
    return pool


def create_app(settings: Settings, store: Store) -> web.Application:
    app = web.Application(
        middlewares=[cors_middleware, errors_middleware, *_optional_middlewares(settings, store)],
        client_max_size=settings.max_body_bytes,
    )
    app[SETTINGS] = settings
    app[STORE] = store
    metrics = app[METRICS] = Metrics()
    app[INGEST] = Ingest(store, prepare_pool(app, settings, store), metrics)
    metrics.gauge(
        "tracebox_writer_queue_spans", "Spans waiting for the writer.", lambda: store.writer.pending_spans
    )
    metrics.gauge(
        "tracebox_writer_last_commit_seconds",
        "Duration of the last commit.",
        lambda: store.writer.stats.last_commit_seconds,
    )
    metrics.gauge("tracebox_writer_commits_total", "Commits since start.", lambda: store.writer.stats.commits)
    metrics.gauge("tracebox_db_bytes", "Database size on disk, WAL included.", store.size_bytes)
    app.router.add_post("/api/v2/spans", collector.post_spans_v2)
    app.router.add_post("/api/v1/spans", collector.post_spans_v1)
    app.router.add_post("/v1/traces", collector.post_otlp)
    api.add_routes(app, "/api/v2")
    api.add_routes(app, "/zipkin/api/v2")
    ops.add_routes(app)
    llm_api.add_routes(app)
    insights_api.add_routes(app)
    add_retention(app, settings, store)
    add_dependency_task(app, store)
    run_with_server(app, blobs.Trainer(store).run, "tracebox-dictionaries")
    if settings.engine:
        add_engine(app, settings, store)
    sampling_api.setup(app, settings, store)
    web_routes.add_routes(app)
    return app


def add_retention(app: web.Application, settings: Settings, store: Store) -> None:
    """Retention runs in the background for as long as the server does."""
    retention = Retention(
        store,
        settings.retention_days * 86_400,
        settings.max_db_mb * 1024 * 1024,
        settings.retention_check_seconds,
    )
    if not retention.enabled:
        return
    app[METRICS].gauge(
        "tracebox_retention_deleted_spans_total", "Spans deleted by retention.", lambda: retention.deleted
    )
    run_with_server(app, retention.run, "tracebox-retention")


def add_engine(app: web.Application, settings: Settings, store: Store) -> None:
    """The anomaly engine and alert delivery run beside the server, started and stopped with it."""
    from tracebox.detectors import http as engine_http
    from tracebox.detectors.config import EngineConfig
    from tracebox.detectors.notify import NOTIFY_DDL, Notifier, build_config
    from tracebox.detectors.runner import EngineRunner

    notify_config = build_config(
        settings.sections.get("alerts"),
        webhooks=settings.webhook_list,
        slack_webhooks=settings.slack_webhook_list,
        public_url=settings.base_url,
    )
    notifier = app[engine_http.NOTIFIER] = Notifier(notify_config, store)
    runner = app[engine_http.RUNNER] = EngineRunner(
        store, EngineConfig.from_dict(settings.sections.get("detectors")), on_changes=notifier.submit
    )
    engine_http.add_routes(app)

    async def start() -> None:
        await store.ensure_schema("notify", [NOTIFY_DDL])
        await notifier.start()
        await runner.start(when_ready=rebuild_groups)

    async def rebuild_groups() -> None:
        await notifier.submit(await runner.open_alerts())  # the notification log stops repeats

    async def stop() -> None:
        await runner.stop()
        await notifier.stop()

    with_server(app, start, stop)


def _optional_middlewares(settings: Settings, store: Store) -> list:
    middlewares = []
    query, ingest = access(settings)
    if query or ingest:
        middlewares.append(auth_middleware(query, ingest))
    if settings.self_tracing:
        middlewares.append(self_tracing_middleware(store))
    return middlewares


def access(settings: Settings) -> tuple[Credentials, Credentials]:
    """(UI and query API credentials, ingest credentials) from the settings."""
    return Credentials(settings.auth_token, settings.auth_basic), Credentials(settings.ingest_token)


def _pem_pair(settings: Settings) -> tuple[bytes, bytes] | None:
    if not settings.tls_cert:
        return None
    with open(settings.tls_cert, "rb") as cert, open(settings.tls_key, "rb") as key:
        return cert.read(), key.read()


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(settings.tls_cert, settings.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load --tls-cert/--tls-key: {exc}") from None
    return context


@web.middleware
async def cors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
):
    origins = request.app[SETTINGS].cors_origin_list
    origin = request.headers.get("Origin")
    allowed = origin and ("*" in origins or origin in origins)
    if request.method == "OPTIONS" and allowed and "Access-Control-Request-Method" in request.headers:
        response: web.StreamResponse = web.Response(status=204)
    else:
        response = await handler(request)
    if allowed:
        response.headers["Access-Control-Allow-Origin"] = "*" if "*" in origins else origin
        response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
        response.headers["Access-Control-Allow-Headers"] = CORS_HEADERS
        response.headers["Access-Control-Max-Age"] = "600"
        if "*" not in origins:
            response.headers["Vary"] = "Origin"
    return response


@web.middleware
async def errors_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
):
    """Turn aiohttp's own refusals into plain messages; log (and answer 500 to) only real bugs."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except (ConnectionResetError, asyncio.CancelledError):
        raise
    except Exception:
        log.exception("unexpected error serving %s %s", request.method, request.path)
        return web.Response(status=500, text="internal error; see the tracebox log")


def bound_port(site: web.TCPSite) -> int:
    server = site._server  # aiohttp keeps the asyncio server here; it is the only way to learn port 0's pick
    return server.sockets[0].getsockname()[1] if server and server.sockets else 0


async def run(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until SIGTERM/SIGINT (or ``stop``), then drain in-flight requests and the write queue."""
    stop = stop or asyncio.Event()
    store = open_store(settings)
    try:
        app = create_app(settings, store)
        tls = tls_context(settings)
    except ConfigError as exc:
        store.close()
        raise SystemExit(f"tracebox: {exc}") from None
    # auto_decompress off: tracebox inflates bodies itself, with a cap that defeats gzip bombs.
    # keepalive_timeout also closes connections that never finish sending their headers (limits).
    runner = web.AppRunner(
        app,
        access_log=None,
        shutdown_timeout=10.0,
        handle_signals=False,
        auto_decompress=False,
        keepalive_timeout=limits.IDLE_TIMEOUT_S,
    )
    await runner.setup()
    try:
        main_site = web.TCPSite(runner, settings.host, settings.port, backlog=1024, ssl_context=tls)
        await main_site.start()
        ports = {"http": bound_port(main_site)}
        if settings.otlp_http_port:
            otlp_site = web.TCPSite(
                runner, settings.host, settings.otlp_http_port, backlog=1024, ssl_context=tls
            )
            await otlp_site.start()
            ports["otlp-http"] = bound_port(otlp_site)
        grpc_server = None
        if settings.otlp_grpc_port:
            grpc_server = await start_grpc_server(
                settings.host,
                settings.otlp_grpc_port,
                app[INGEST].accept,
                max_message_bytes=settings.max_body_bytes,
                authorize=partial(grpc_authorized, access(settings)[1]),
                tls=_pem_pair(settings),
            )
            ports["otlp-grpc"] = grpc_server.port
    except OSError as exc:
        await runner.cleanup()
        store.close()
        raise SystemExit(
            f"tracebox: cannot listen on {settings.host}: {exc.strerror or exc}. Is another server running? "
            "Choose other ports with --port, --otlp-http-port, --otlp-grpc-port (0 turns OTLP ports off)."
        ) from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    listening = " ".join(f"{name}={settings.host}:{port}" for name, port in ports.items())
    print(f"tracebox ready: {listening} db={store.path}", flush=True)
    scheme = "https" if tls else "http"
    print(f"  UI and Zipkin API: {scheme}://{settings.host}:{ports['http']}/", flush=True)
    try:
        await stop.wait()
    finally:
        print("tracebox: stopping, draining requests and the write queue...", file=sys.stderr, flush=True)
        if grpc_server is not None:
            await grpc_server.stop(grace=10.0)
        await runner.cleanup()
        store.close()
        print("tracebox: stopped", file=sys.stderr, flush=True)
