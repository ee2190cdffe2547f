"""Background work beside the server: started and stopped with it, a step run until it stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the engine's process imports this module and has no use for aiohttp
    from aiohttp import web

log = logging.getLogger(__name__)


def with_server(
    app: web.Application, start: Callable[[], Awaitable[None]], stop: Callable[[], Awaitable[None]]
) -> None:
    """Run ``start()`` when the server starts and ``stop()`` when it stops (after the last request)."""

    async def started(_app: web.Application) -> None:
        await start()

    async def stopped(_app: web.Application) -> None:
        await stop()

    app.on_startup.append(started)
    app.on_cleanup.append(stopped)


def run_with_server(app: web.Application, run: Callable[[asyncio.Event], Awaitable[None]], name: str) -> None:
    """Run ``run(stopping)`` as a task for as long as the server runs; ``stopping`` is set to end it."""
    stopping = asyncio.Event()
    tasks: list[asyncio.Task] = []

    async def start() -> None:
        tasks.append(asyncio.create_task(run(stopping), name=name))

    async def stop() -> None:
        stopping.set()
        await asyncio.gather(*tasks)

    with_server(app, start, stop)


async def repeat(
    step: Callable[[], Awaitable[bool]],
    stopping: asyncio.Event,
    idle_s: float,
    name: str,
    failed: Callable[[], None] | None = None,
) -> None:
    """Run ``step`` until ``stopping`` is set, resting ``idle_s`` (or until stopped) whenever it
    had nothing to do (returned False) or failed; a failure is logged and counted, never fatal."""
    while not stopping.is_set():
        try:
            worked = await step()
        except Exception:
            if failed is not None:
                failed()
            log.exception("%s failed; retrying in %ss", name, idle_s)
            worked = False
        if not worked:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), idle_s)
