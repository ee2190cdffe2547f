"""The alert delivery service: alerts in (``submit``), notifications out, durably.

``submit`` only updates memory and never waits on a receiver, so the engine is never slowed by one.
A dispatch loop flushes due aggregation groups into the outbox; one worker per receiver sends them.

After a restart, the engine integration should ``submit`` the alerts that are still open once: the
groups are rebuilt, and the persisted notification log keeps that from re-notifying before the
repeat interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import aiohttp
import apsw

from tracebox.appliance.store import Store

from . import nflog, outbox, silences
from .alert import Alert
from .channel import Channel, Group
from .config import NotifyConfig, Receiver
from .delivery import HOLD_AFTER_ERROR_S, MAX_IDLE_S, ReceiverWorker
from .dispatch import AggregationGroup, Dispatcher
from .silences import Silence
from .slack import SlackChannel
from .webhook import WebhookChannel

log = logging.getLogger(__name__)

PRUNE_EVERY_S = 3600.0


def channel_for(receiver: Receiver) -> Channel:
    if receiver.channel == "slack":
        return SlackChannel()
    return WebhookChannel(receiver.max_alerts)


class Notifier:
    def __init__(
        self,
        config: NotifyConfig,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self._store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self._dispatcher = Dispatcher(config.router)
        self._channels = {name: channel_for(r) for name, r in config.receivers.items()}
        self._workers: dict[str, ReceiverWorker] = {}
        self._session: aiohttp.ClientSession | None = None
        self._loop_task: asyncio.Task | None = None
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._pruned_at = 0.0

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the workers; notifications left pending by an earlier run go out again."""
        names = list(self.config.receivers)
        orphans = await self._store.write(lambda conn: outbox.fail_orphans(conn, names, self._now_us()))
        if orphans:
            log.warning(
                "%d pending notifications were for receivers no longer configured; marked failed", orphans
            )
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),
            headers={"User-Agent": "tracebox-alerts"},
        )
        for name, receiver in self.config.receivers.items():
            worker = self._workers[name] = ReceiverWorker(
                receiver, self._store, self._session, self.config.retry, self._clock, self._rng
            )
            worker.start()
        self._loop_task = asyncio.create_task(self._dispatch_loop(), name="tracebox-notify-dispatch")

    async def stop(self) -> None:
        """Stop sending. In-flight attempts are abandoned and stay pending, to be sent after a restart;
        alerts still waiting in a group are the engine's to submit again."""
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        await asyncio.gather(*(w.stop() for w in self._workers.values()))
        self._workers.clear()
        if self._session is not None:
            await self._session.close()

    # -- alerts in -----------------------------------------------------------------------------

    async def submit(self, changes: Iterable[Any]) -> None:
        """Take alerts that changed state: engine alert dicts, or objects with an ``.alert`` dict."""
        now = self._clock()
        for change in changes:
            raw = change if isinstance(change, Mapping) else change.alert
            try:
                alert = Alert.from_engine(raw, self.config.public_url, self.config.critical_score)
            except (KeyError, TypeError, ValueError):
                # One malformed alert must not stop the others, nor the engine that submitted it.
                log.exception(
                    "alert %r cannot be notified", raw.get("id") if isinstance(raw, Mapping) else raw
                )
                continue
            self._dispatcher.insert(alert, now)
        self._wake.set()

    def wake(self) -> None:
        """Look at timers and pending notifications now (after a clock change in tests, for one)."""
        self._wake.set()
        for worker in self._workers.values():
            worker.wake()

    async def tick(self) -> int:
        """Flush every group that is due; returns the notifications written to the outbox."""
        async with self._flush_lock:
            now = self._clock()
            due = self._dispatcher.due(now)
            if not due:
                return 0
            active = await self._store.read(silences.list_silences, int(now * 1e6))
            written = 0
            for group in due:
                written += await self._flush(group, active, now)
            return written

    # -- silences ------------------------------------------------------------------------------

    async def create_silence(
        self,
        matchers: list[str],
        *,
        duration: float | None = None,
        ends_at: float | None = None,
        starts_at: float | None = None,
        created_by: str = "",
        comment: str = "",
    ) -> Silence:
        """A silence from ``starts_at`` (default now) until ``ends_at`` or for ``duration`` seconds
        (epoch seconds). Raises ValueError for bad matchers or times."""
        start = self._clock() if starts_at is None else starts_at
        end = ends_at if ends_at is not None else start + (duration or 0.0)
        return await self._store.write(
            lambda conn: silences.create(
                conn, matchers, int(start * 1e6), int(end * 1e6), created_by, comment
            )
        )

    async def list_silences(self, include_expired: bool = False) -> list[dict[str, Any]]:
        now_us = self._now_us()
        found = await self._store.read(silences.list_silences, now_us, include_expired)
        return [s.to_json(now_us) for s in found]

    async def expire_silence(self, silence_id: str) -> bool:
        now_us = self._now_us()
        return await self._store.write(lambda conn: silences.expire(conn, silence_id, now_us))

    # -- state for the API and the UI ----------------------------------------------------------

    def receivers(self) -> list[dict[str, Any]]:
        return [r.describe() for r in self.config.receivers.values()]

    async def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        """See ``outbox.list_deliveries``: filters receiver, state, alert_id, limit."""
        return await self._store.read(lambda conn: outbox.list_deliveries(conn, **filters))

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return await self._store.read(outbox.list_attempts, delivery_id)

    # -- internals -----------------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while True:
            self._wake.clear()
            try:
                await self.tick()
                await self._prune()
            except Exception:
                # The group stays due; the store is likely refusing writes, so wait before retrying.
                log.exception("alert dispatch failed; retrying in %ss", HOLD_AFTER_ERROR_S)
                timeout = HOLD_AFTER_ERROR_S
            else:
                due = self._dispatcher.next_due()
                timeout = MAX_IDLE_S if due is None else min(MAX_IDLE_S, max(0.0, due - self._clock()))
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (stop()).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _flush(self, group: AggregationGroup, active: list[Silence], now: float) -> int:
        receiver = self.config.receivers[group.route.receiver]
        now_us = int(now * 1e6)
        snapshot = list(group.alerts.values())
        # Silences mute firing alerts only (see silences.py).
        shown = [a for a in snapshot if not (a.firing and any(s.mutes(a.labels, now_us) for s in active))]
        firing = {a.fingerprint for a in shown if a.firing}
        resolved = {a.fingerprint for a in shown if not a.firing}
        entry = await self._store.read(nflog.load, receiver.name, group.key)
        repeat_us = int(group.route.timing.repeat_interval * 1e6)
        if not nflog.needs_update(
            entry,
            firing,
            resolved,
            send_resolved=receiver.send_resolved,
            repeat_interval_us=repeat_us,
            now_us=now_us,
        ):
            self._dispatcher.flushed(group, snapshot, now)
            return 0
        sent = tuple(a for a in shown if a.firing or receiver.send_resolved)
        view = Group(receiver.name, group.key, group.labels, sent, self.config.public_url)
        rendered = self._channels[receiver.name].render(view) if sent else None
        logged = nflog.Entry(frozenset(firing), frozenset(resolved), now_us)

        def job(conn: apsw.Connection) -> None:
            if rendered is not None:
                outbox.enqueue(
                    conn,
                    receiver=receiver.name,
                    channel=receiver.channel,
                    group_key=group.key,
                    status=view.status,
                    alert_ids=[a.id for a in sent],
                    body=rendered.body,
                    headers=rendered.headers,
                    now_us=now_us,
                    give_up_after_us=int(self.config.retry.give_up_after * 1e6),
                )
            nflog.save(conn, receiver.name, group.key, logged)

        await self._store.write(job)
        self._dispatcher.flushed(group, snapshot, now)
        if rendered is None:
            return 0
        if worker := self._workers.get(receiver.name):
            worker.wake()
        return 1

    async def _prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at < PRUNE_EVERY_S:
            return
        self._pruned_at = now
        before = int((now - self.config.keep_deliveries) * 1e6)
        await self._store.write(lambda conn: outbox.prune(conn, before))

    def _now_us(self) -> int:
        return int(self._clock() * 1e6)
