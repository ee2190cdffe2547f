"""The background task that keeps the per-minute dependency links current (see store.dependencies).

Tunable by environment (tests use small values): ``TRACEBOX_DEPENDENCY_QUIET_SECONDS`` (how long a
bucket must go without new spans before it is linked, default 60) and
``TRACEBOX_DEPENDENCY_IDLE_SECONDS`` (the rest between rounds with nothing to do, default 5).
"""

from __future__ import annotations

import asyncio
import os

from aiohttp import web

from tracebox.appliance.appkeys import METRICS
from tracebox.appliance.background import repeat, run_with_server
from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.store import dependencies

#: Buckets linked per round (one read snapshot, one write job).
BUCKETS_PER_ROUND = 16


class DependencyTask:
    def __init__(self, store, quiet_s: float = 60.0, idle_s: float = 5.0) -> None:
        self.store = store
        self.quiet_s = quiet_s
        self.idle_s = idle_s
        self.linked = 0
        self.failures = 0
        self.backlog = -1  # unknown until the first round

    async def step(self) -> bool:
        """One round: prune after retention, then link the due buckets; True when it linked some."""
        try:
            await self.store.write(dependencies.prune)
            buckets = await self.store.read(
                dependencies.due_buckets, int(self.quiet_s * 1_000_000), BUCKETS_PER_ROUND
            )
            if buckets:
                seen, results, stale = await self.store.read(dependencies.link_buckets, buckets)
                await self.store.write(lambda conn: dependencies.store_buckets(conn, seen, results, stale))
            self.backlog = await self.store.read(dependencies.backlog)
            if not buckets:
                return False
        except (Overloaded, StoreUnavailable):
            return False  # busy or disk full: next round
        self.linked += len(buckets)
        return True

    async def run(self, stopping: asyncio.Event) -> None:
        await repeat(self.step, stopping, self.idle_s, "dependency linking", self._failed)

    def _failed(self) -> None:
        self.failures += 1


def add_dependency_task(app: web.Application, store) -> DependencyTask:
    """Start the task with the app and stop it with it."""
    task = DependencyTask(
        store,
        quiet_s=float(os.environ.get("TRACEBOX_DEPENDENCY_QUIET_SECONDS", 60)),
        idle_s=float(os.environ.get("TRACEBOX_DEPENDENCY_IDLE_SECONDS", 5)),
    )
    metrics = app[METRICS]
    metrics.gauge(
        "tracebox_dependency_buckets_linked_total",
        "Minute buckets of dependency links computed.",
        lambda: task.linked,
    )
    metrics.gauge(
        "tracebox_dependency_dirty_buckets",
        "Minute buckets waiting to be linked (-1 before the first round).",
        lambda: task.backlog,
    )

    run_with_server(app, task.run, "tracebox-dependencies")
    return task
