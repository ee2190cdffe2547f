"""Self-tracing: tracebox records its own query API calls into itself, as service ``tracebox``.

Off by default, as in Zipkin (``SELF_TRACING_ENABLED``). A caller's context in ``traceparent`` or
B3 headers is joined, so a Grafana or UI request traced upstream shows tracebox's part too.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from tracebox.appliance.model import Span
from tracebox.appliance.store import Store

log = logging.getLogger(__name__)

TRACED_PREFIXES = ("/api/v2/", "/zipkin/api/v2/", "/api/tracebox/")


def incoming_context(headers) -> tuple[str, str | None]:
    """(trace id, parent span id) from W3C ``traceparent`` or B3; a new trace when neither parses."""
    parent = headers.get("traceparent", "")
    parts = parent.split("-")
    if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16 and _hex(parts[1] + parts[2]):
        return parts[1].lower(), parts[2].lower()
    single = headers.get("b3", "").split("-")
    if (
        len(single) >= 2
        and _hex(single[0] + single[1])
        and len(single[1]) == 16
        and len(single[0]) in (16, 32)
    ):
        return single[0].lower(), single[1].lower()
    trace_id, span_id = headers.get("X-B3-TraceId", ""), headers.get("X-B3-SpanId", "")
    if len(trace_id) in (16, 32) and len(span_id) == 16 and _hex(trace_id + span_id):
        return trace_id.lower(), span_id.lower()
    return secrets.token_hex(16), None


def _hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def self_tracing_middleware(store: Store):
    pending: set[asyncio.Task] = set()

    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ):
        if not request.path.startswith(TRACED_PREFIXES):
            return await handler(request)
        trace_id, parent_id = incoming_context(request.headers)
        start = time.time()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            route = request.match_info.route.resource
            template = route.canonical if route is not None else request.path
            span: Span = {
                "traceId": trace_id,
                "id": secrets.token_hex(8),
                "kind": "SERVER",
                "name": f"{request.method} {template}".lower(),
                "timestamp": int(start * 1_000_000),
                "duration": max(1, int((time.time() - start) * 1_000_000)),
                "localEndpoint": {"serviceName": "tracebox"},
                "tags": {
                    "http.method": request.method,
                    "http.path": request.path,
                    "http.status_code": str(status),
                },
            }
            if parent_id:
                span["parentId"] = parent_id
            if status >= 400:
                span["tags"]["error"] = str(status)
            task = asyncio.create_task(_record(store, span))
            pending.add(task)
            task.add_done_callback(pending.discard)

    return middleware


async def _record(store: Store, span: Span) -> None:
    try:
        await store.write_spans([span])
    except Exception:  # a busy or full store must never fail the request being traced
        log.debug("self-tracing span dropped", exc_info=True)
