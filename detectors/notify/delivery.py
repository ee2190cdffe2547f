"""One worker per receiver sends its pending outbox rows, so a slow or dead receiver only delays
itself: each has its own loop, its own concurrency limit and a timeout on every request.

Within a receiver, a group's notifications go one at a time and in order; different groups go in
parallel up to ``concurrency``. Every attempt is recorded before the next one is considered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable

import aiohttp

from tracebox.appliance.store import Store

from . import outbox, sender, signing
from .config import Receiver
from .outbox import DELIVERED, FAILED, PENDING, Pending
from .retry import RetryPolicy

log = logging.getLogger(__name__)

#: Longest a worker sleeps without looking at the outbox again (a clock jump, an edit by hand).
MAX_IDLE_S = 30.0
#: Pause of a group whose attempt could not be recorded.
HOLD_AFTER_ERROR_S = 5.0


class ReceiverWorker:
    def __init__(
        self,
        receiver: Receiver,
        store: Store,
        session: aiohttp.ClientSession,
        policy: RetryPolicy,
        clock: Callable[[], float],
        rng: random.Random,
    ) -> None:
        self.receiver = receiver
        self._store = store
        self._session = session
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._wake = asyncio.Event()
        self._in_flight: dict[str, asyncio.Task] = {}  # by group key
        self._settled = 0  # attempts finished (and recorded) so far
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"tracebox-notify-{self.receiver.name}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                timeout = await self._start_due()
            except Exception:
                log.exception("notification worker for receiver %s failed; retrying", self.receiver.name)
                timeout = MAX_IDLE_S
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation (stop()).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()

    async def _start_due(self) -> float:
        """Start the due heads of idle groups; return how long to sleep before the next one is due."""
        settled = self._settled
        rows = await self._store.read(outbox.heads, self.receiver.name)
        if settled != self._settled:
            return 0.0  # an attempt was recorded while we read: the rows may predate it, read again
        now = self._clock()
        sleep = MAX_IDLE_S
        for row in rows:
            if row.group_key in self._in_flight:
                continue
            wait = row.next_attempt_at_us / 1e6 - now
            if wait > 0:
                sleep = min(sleep, wait)
            elif len(self._in_flight) < self.receiver.concurrency:
                task = asyncio.create_task(self._attempt(row))
                self._in_flight[row.group_key] = task
                task.add_done_callback(lambda _, key=row.group_key: self._done(key))
        return sleep

    def _done(self, group_key: str) -> None:
        self._in_flight.pop(group_key, None)
        self._settled += 1
        self._wake.set()

    async def _attempt(self, row: Pending) -> None:
        try:
            await self._send(row)
        except Exception:
            # Most likely the store refused the attempt's record; hold this group a moment rather
            # than resend in a tight loop. The row is still pending, so nothing is lost.
            log.exception(
                "notification %s to receiver %s: could not record the attempt",
                row.delivery_id,
                self.receiver.name,
            )
            await asyncio.sleep(HOLD_AFTER_ERROR_S)

    async def _send(self, row: Pending) -> None:
        receiver = self.receiver
        started = self._clock()
        headers = row.headers | signing.headers(
            row.delivery_id, row.body, receiver.secret.reveal() if receiver.secret else None, started
        )
        clock_started = time.monotonic()
        result = await sender.post(
            self._session, receiver.url.reveal(), row.body, headers, receiver.timeout, started
        )
        duration_us = int((time.monotonic() - clock_started) * 1e6)
        now = self._clock()
        now_us = int(now * 1e6)
        next_at_us = now_us
        if result.ok:
            state = DELIVERED
        elif not result.retryable:
            state = FAILED
        else:
            next_at_us = now_us + int(
                self._policy.delay(row.attempts + 1, result.retry_after, self._rng) * 1e6
            )
            state = PENDING if next_at_us < row.give_up_at_us else FAILED
        if state != DELIVERED:
            log.warning(
                "notification %s to receiver %s: %s (attempt %d, %s)",
                row.delivery_id,
                receiver.name,
                result.error,
                row.attempts + 1,
                "giving up" if state == FAILED else f"retrying in {(next_at_us - now_us) / 1e6:.1f}s",
            )
        await self._store.write(
            lambda conn: outbox.record_attempt(
                conn,
                row,
                at_us=int(started * 1e6),
                duration_us=duration_us,
                status_code=result.status,
                error=result.error,
                state=state,
                next_attempt_at_us=next_at_us,
            )
        )
