"""``tracebox alerts test-webhook``: send a sample alert straight to configured receivers, through
the same channel, signing and sender as real notifications, but not through the outbox: the answer
(or the error) is what the person at the terminal wants to see."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import aiohttp

from . import sender, signing
from .alert import Alert
from .channel import Group
from .config import NotifyConfig
from .notifier import channel_for


@dataclass(frozen=True)
class SampleResult:
    receiver: str
    delivery_id: str
    status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def sample_alert(now: float) -> dict:
    """An engine-shaped alert that says it is a test."""
    started = int((now - 300) * 1e6)
    return {
        "id": "test" + uuid.uuid4().hex[:12],
        "kind": "latency",
        "service": "tracebox-test",
        "operation": "GET /checkout",
        "status": "firing",
        "startedAt": started,
        "endedAt": None,
        "expected": {"medianUs": 120_000, "p90Us": 210_000},
        "observed": {"medianUs": 480_000, "p90Us": 900_000, "count": 412},
        "score": 9.5,
        "traceIds": ["463ac35c9f6413ad48485a3953bb6124"],
        "labels": {"view": "server", "test": True},
    }


async def send_test_alert(config: NotifyConfig, receiver_name: str | None = None) -> list[SampleResult]:
    """Send one sample alert to ``receiver_name`` (default: every receiver); one result each.
    Raises KeyError for a receiver that is not configured."""
    receivers = [config.receivers[receiver_name]] if receiver_name else list(config.receivers.values())
    now = time.time()
    alert = Alert.from_engine(sample_alert(now), config.public_url, config.critical_score)
    results = []
    async with aiohttp.ClientSession(headers={"User-Agent": "tracebox-alerts"}) as session:
        for receiver in receivers:
            group = Group(receiver.name, "{test}", {"service": "tracebox-test"}, (alert,), config.public_url)
            rendered = channel_for(receiver).render(group)
            delivery_id = uuid.uuid4().hex
            secret = receiver.secret.reveal() if receiver.secret else None
            headers = rendered.headers | signing.headers(delivery_id, rendered.body, secret, now)
            outcome = await sender.post(
                session, receiver.url.reveal(), rendered.body, headers, receiver.timeout, now
            )
            results.append(SampleResult(receiver.name, delivery_id, outcome.status, outcome.error))
    return results
