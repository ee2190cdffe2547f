"""Optional access control: one credential for the UI and query API, another for ingest.

Either can be a bearer token (``Authorization: Bearer <token>``) and the UI/query side can also
take basic auth (``user:password``), which browsers prompt for. ``OPEN_PATHS`` stay open, and CORS
preflights pass. Comparisons are constant-time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

INGEST_PATHS = ("/api/v2/spans", "/api/v1/spans", "/v1/traces")
#: Open even when credentials are set: liveness probes, and the sampling strategies SDK samplers
#: (Jaeger remote, OpenTelemetry's jaeger_remote) fetch without any way to send credentials.
OPEN_PATHS = ("/health", "/actuator/health", "/api/sampling", "/sampling")


@dataclass(frozen=True)
class Credentials:
    """Accepted ``Authorization`` header values; empty means no check."""

    bearer: str = ""
    basic: str = ""  # "user:password"

    def __bool__(self) -> bool:
        return bool(self.bearer or self.basic)

    def allows(self, header: str) -> bool:
        scheme, _, value = header.partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and self.bearer:
            return hmac.compare_digest(value.strip().encode(), self.bearer.encode())
        if scheme == "basic" and self.basic:
            try:
                given = base64.b64decode(value.strip(), validate=True)
            except (binascii.Error, ValueError):
                return False
            return hmac.compare_digest(given, self.basic.encode())
        return False

    def challenge(self) -> str:
        return 'Basic realm="tracebox", charset="UTF-8"' if self.basic else 'Bearer realm="tracebox"'

    def __repr__(self) -> str:  # never print secrets
        return f"Credentials(bearer={'set' if self.bearer else 'unset'}, basic={'set' if self.basic else 'unset'})"


def is_ingest(request: web.Request) -> bool:
    return request.method == "POST" and request.path in INGEST_PATHS


def auth_middleware(query: Credentials, ingest: Credentials):
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ):
        if request.method == "OPTIONS" or request.path in OPEN_PATHS:
            return await handler(request)
        required = ingest if is_ingest(request) else query
        if required and not required.allows(request.headers.get("Authorization", "")):
            what = "ingest" if required is ingest else "this page or API"
            raise web.HTTPUnauthorized(
                text=f"authentication required for {what}: send an Authorization header",
                headers={"WWW-Authenticate": required.challenge()},
            )
        return await handler(request)

    return middleware


def grpc_authorized(ingest: Credentials, metadata: tuple[tuple[str, str | bytes], ...] | None) -> bool:
    """The same check for OTLP/gRPC, whose exporters send ``authorization`` metadata."""
    if not ingest:
        return True
    for key, value in metadata or ():
        if key.lower() == "authorization" and isinstance(value, str):
            return ingest.allows(value)
    return False
