"""Helpers for the alert delivery tests: a real HTTP receiver on loopback, an injected clock, engine-
shaped alerts and a store with the notification tables."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tracebox.appliance.store import Store
from tracebox.detectors.notify import NOTIFY_DDL

T0 = 1_718_000_000.0  # the injected clock's start, epoch seconds


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def delivery_id(self) -> str:
        return self.headers["X-Tracebox-Delivery"]


@dataclass
class HttpReceiver:
    """Records every request; answers with the queued (status, headers) replies, then 200."""

    replies: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang: bool = False  # never answer (a slow receiver)
    requests: list[Received] = field(default_factory=list)
    _runner: web.AppRunner | None = None
    sock: socket.socket | None = None

    def reserve(self) -> str:
        """Bind a port without listening: connections are refused until ``start``."""
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.base

    @property
    def base(self) -> str:
        assert self.sock is not None
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    async def start(self) -> str:
        if self.sock is None:
            self.reserve()
        assert self.sock is not None
        self.sock.listen(64)
        app = web.Application()
        app.router.add_post("/{path:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.1)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()
        return self.base

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        elif self.sock is not None:
            self.sock.close()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.hang:
            self.requests.append(Received(request.path, dict(request.headers), body, 0))
            await asyncio.Event().wait()
        status, headers = self.replies.pop(0) if self.replies else (200, {})
        self.requests.append(Received(request.path, dict(request.headers), body, status))
        return web.Response(status=status, headers=headers, text="ok" if status < 300 else "unavailable")

    def accepted(self, path: str | None = None) -> list[Received]:
        return [r for r in self.requests if 200 <= r.answered < 300 and (path is None or r.path == path)]


async def eventually(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Wait until ``condition()`` is truthy (polling briefly); fail after ``timeout`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not (result := condition()):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.005)
    return result


async def open_store(path: Path) -> Store:
    store = Store(path)

    def create(conn: Any) -> None:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'notify_outbox'").fetchall():
            conn.execute(NOTIFY_DDL)

    await store.write(create)
    return store


def engine_alert(
    alert_id: str,
    *,
    kind: str = "latency",
    service: str = "checkout",
    operation: str = "GET /cart",
    status: str = "firing",
    score: float = 8.0,
    started: int = int(T0 * 1e6) - 60_000_000,
    **extra: Any,
) -> dict[str, Any]:
    """An alert as the engine hands it over."""
    resolved = status == "resolved"
    return {
        "id": alert_id,
        "kind": kind,
        "service": service,
        "operation": operation,
        "status": status,
        "startedAt": started,
        "endedAt": started + 120_000_000 if resolved else None,
        "expected": {"medianUs": 120_000, "p90Us": 200_000, "spread": 0.2},
        "observed": {"medianUs": 480_000, "p90Us": 900_000, "count": 250, "ratio": 4.0},
        "score": score,
        "traceIds": ["463ac35c9f6413ad48485a3953bb6124", "a2fb4a1d1a96d312"],
        "labels": {"view": "server"},
        **extra,
    }
