"""Background work that follows the store: a step run again and again until the server stops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


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
