"""Alert delivery end to end, against real HTTP receivers on loopback: payloads, signatures, order,
grouping and repeat (on an injected clock), silences, slow and failing receivers, and the outbox
surviving a restart while a receiver is down."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from tests.notify_support import FakeClock, HttpReceiver, engine_alert, eventually, open_store
from tracebox.detectors.notify import Notifier, NotifyConfig, build_config, send_test_alert, verify

BASE = "https://tracebox.example.com"
SECRET = "whsec-test"


def config(receivers: dict[str, dict], **section: Any) -> NotifyConfig:
    section.setdefault("group_wait", "0s")
    return build_config({"receivers": receivers, **section}, public_url=BASE)


@contextlib.asynccontextmanager
async def running(
    db: Path, cfg: NotifyConfig, clock: FakeClock, start: bool = True
) -> AsyncIterator[Notifier]:
    store = await open_store(db)
    service = Notifier(cfg, store, clock=clock, rng=random.Random(7))
    if start:
        await service.start()
    try:
        yield service
    finally:
        await service.stop()
        store.close()


@contextlib.asynccontextmanager
async def listening(receiver: HttpReceiver | None = None) -> AsyncIterator[HttpReceiver]:
    receiver = receiver or HttpReceiver()
    await receiver.start()
    try:
        yield receiver
    finally:
        await receiver.stop()


async def flush(service: Notifier) -> list[dict]:
    """Flush what is due and return the outbox, oldest first. The running dispatch loop may flush
    first; the outcome is the same, since what is due follows the injected clock."""
    await service.tick()
    return list(reversed(await service.deliveries()))


async def until(
    service: Notifier, condition: Callable[[list[dict]], bool], timeout: float = 5.0
) -> list[dict]:
    """The outbox (oldest first) once ``condition`` holds for it."""
    deadline = time.monotonic() + timeout
    while not condition(rows := list(reversed(await service.deliveries()))):
        assert time.monotonic() < deadline, f"outbox never got there: {rows}"
        await asyncio.sleep(0.005)
    return rows


def delivered(rows: list[dict]) -> bool:
    return bool(rows) and all(r["state"] == "delivered" for r in rows)


def test_signed_webhook_arrives_in_alertmanager_shape(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with listening() as receiver:
            cfg = config({"ops": {"webhook": f"{receiver.base}/hook", "secret": SECRET}})
            async with running(tmp_path / "t.db", cfg, clock) as service:
                await service.submit([engine_alert("a1")])
                (queued,) = await flush(service)
                (got,) = await eventually(receiver.accepted)
                (row,) = await until(service, delivered)
        assert got.path == "/hook"
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["User-Agent"] == "tracebox-alerts"
        assert got.delivery_id == queued["deliveryId"]
        signature = got.headers["X-Tracebox-Signature"]
        assert verify(SECRET, got.body, signature, now=clock())
        assert not verify(SECRET, got.body.replace(b"checkout", b"checkouT"), signature, now=clock())
        body = got.json
        assert (body["version"], body["receiver"], body["status"]) == ("4", "ops", "firing")
        assert body["groupLabels"] == {"kind": "latency", "service": "checkout"}
        assert body["alerts"][0]["annotations"]["alertURL"] == f"{BASE}/alerts/a1"
        assert row["attempts"] == 1 and row["deliveredAt"] == int(clock() * 1e6) and row["lastError"] is None
        assert row["alertIds"] == ["a1"] and row["receiver"] == "ops" and row["channel"] == "webhook"

    asyncio.run(scenario())


def test_slack_message_arrives_unsigned_with_buttons(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with listening() as receiver:
            cfg = config({"chat": {"slack": f"{receiver.base}/services/T/B/X"}})
            async with running(tmp_path / "t.db", cfg, FakeClock()) as service:
                await service.submit([engine_alert("a1")])
                await flush(service)
                (got,) = await eventually(receiver.accepted)
        assert "X-Tracebox-Signature" not in got.headers
        assert got.headers["X-Tracebox-Delivery"]
        blocks = got.json["blocks"]
        assert [b["type"] for b in blocks] == ["header", "section", "actions", "divider"]
        assert [b["url"] for b in blocks[2]["elements"]] == [
            f"{BASE}/alerts/a1",
            f"{BASE}/traces/463ac35c9f6413ad48485a3953bb6124",
        ]

    asyncio.run(scenario())


def test_firing_then_resolved_arrive_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        cfg = config({"ops": {"webhook": "http://127.0.0.1:1/hook"}}, group_wait="30s", group_interval="1m")
        db = tmp_path / "t.db"
        async with running(db, cfg, clock, start=False) as service:
            await service.submit([engine_alert("a1")])
            assert await flush(service) == []  # group_wait not over
            clock.advance(30)
            assert len(await flush(service)) == 1
            await service.submit([engine_alert("a1", status="resolved")])
            clock.advance(59)
            assert len(await flush(service)) == 1  # changes wait for group_interval
            clock.advance(1)
            firing, resolved = await flush(service)
        assert (firing["status"], resolved["status"]) == ("firing", "resolved")
        assert firing["groupKey"] == resolved["groupKey"]
        # Both were queued before anything was sent; a group's notifications go out in order.
        async with listening() as receiver:
            cfg = config({"ops": {"webhook": f"{receiver.base}/hook"}})
            async with running(db, cfg, clock) as service:
                await until(service, delivered)
        assert [r.json["status"] for r in receiver.requests] == ["firing", "resolved"]
        assert [r.delivery_id for r in receiver.requests] == [firing["deliveryId"], resolved["deliveryId"]]
        assert receiver.requests[1].json["alerts"][0]["endsAt"] != "0001-01-01T00:00:00Z"

    asyncio.run(scenario())


def test_grouping_group_interval_and_repeat_interval(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with listening() as receiver:
            cfg = config(
                {"ops": {"webhook": f"{receiver.base}/hook"}},
                group_by=["kind", "service"],
                group_wait="10s",
                group_interval="1m",
                repeat_interval="5m",
            )
            async with running(tmp_path / "t.db", cfg, clock) as service:
                await service.submit(
                    [
                        engine_alert("a1"),
                        engine_alert("a2", operation="POST /pay"),
                        engine_alert("a3", service="payments"),
                    ]
                )
                clock.advance(10)
                first = await flush(service)
                assert sorted(r["alertIds"] for r in first) == [["a1", "a2"], ["a3"]]
                for _ in range(4):  # unchanged groups stay quiet until the repeat interval
                    clock.advance(60)
                    assert len(await flush(service)) == 2
                clock.advance(60)  # 5 minutes after the first notification
                repeats = (await flush(service))[2:]
                assert sorted(r["alertIds"] for r in repeats) == [["a1", "a2"], ["a3"]]
                clock.advance(10)
                await service.submit([engine_alert("a4", operation="GET /health")])
                assert len(await flush(service)) == 4  # a new alert in a flushed group waits for its interval
                clock.advance(50)
                (news,) = (await flush(service))[4:]
                assert news["alertIds"] == ["a1", "a2", "a4"]
                await until(service, delivered)
        assert len(receiver.accepted()) == 5
        assert [
            len(r.json["alerts"])
            for r in receiver.accepted()
            if r.json["groupLabels"]["service"] == "checkout"
        ] == [
            2,
            2,
            3,
        ]

    asyncio.run(scenario())


def test_silences_mute_firing_alerts_until_they_expire(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        db = tmp_path / "t.db"
        cfg = config({"ops": {"webhook": "http://127.0.0.1:1/hook"}}, group_interval="1m")
        async with running(db, cfg, clock, start=False) as service:
            silence = await service.create_silence(
                ['service="checkout"', "kind=~latency|error"],
                duration=3600,
                created_by="ana",
                comment="deploy",
            )
            await service.submit([engine_alert("a1"), engine_alert("a3", service="payments")])
            assert [r["alertIds"] for r in await flush(service)] == [["a3"]]
            (listed,) = await service.list_silences()
            assert listed["id"] == silence.id and listed["state"] == "active" and listed["createdBy"] == "ana"
            assert listed["matchers"] == ['service="checkout"', 'kind=~"latency|error"']
        async with running(db, cfg, clock, start=False) as service:  # silences are stored
            assert [s["id"] for s in await service.list_silences()] == [silence.id]
            assert await service.expire_silence(silence.id)
            assert not await service.expire_silence(silence.id)
            assert await service.list_silences() == []
            assert [s["state"] for s in await service.list_silences(include_expired=True)] == ["expired"]
            await service.submit([engine_alert("a1")])
            assert [r["alertIds"] for r in await flush(service)][1:] == [["a1"]]

    asyncio.run(scenario())


def test_send_resolved_false_sends_firing_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        cfg = config(
            {"ops": {"webhook": "http://127.0.0.1:1/hook", "send_resolved": False}}, group_interval="1m"
        )
        async with running(tmp_path / "t.db", cfg, clock, start=False) as service:
            await service.submit([engine_alert("a1")])
            await flush(service)
            await service.submit([engine_alert("a1", status="resolved")])
            clock.advance(60)
            assert [r["status"] for r in await flush(service)] == ["firing"]
            await service.submit([engine_alert("a1")])  # the log was cleared: firing again is news
            clock.advance(60)
            assert [r["status"] for r in await flush(service)] == ["firing", "firing"]

    asyncio.run(scenario())


def test_a_slow_receiver_does_not_hold_up_another(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with listening(HttpReceiver(hang=True)) as slow, listening() as fast:
            cfg = config(
                {
                    "slow": {"webhook": f"{slow.base}/hook", "timeout": "300ms"},
                    "fast": {"webhook": f"{fast.base}/hook"},
                }
            )
            async with running(tmp_path / "t.db", cfg, FakeClock()) as service:
                await service.submit([engine_alert("a1")])
                await flush(service)
                await eventually(lambda: fast.accepted() and slow.requests)
                assert not slow.accepted()  # still hanging when the other got through
                rows = await until(
                    service, lambda rows: any(r["attempts"] for r in rows if r["receiver"] == "slow")
                )
        (row,) = [r for r in rows if r["receiver"] == "slow"]
        assert (row["state"], row["lastError"]) == ("pending", "timed out after 0.3s")

    asyncio.run(scenario())


def test_a_client_error_is_not_retried_and_redelivery_keeps_the_delivery_id(tmp_path: Path) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        async with (
            listening(HttpReceiver(replies=[(400, {})])) as bad,
            listening(HttpReceiver(hang=True)) as hung,
        ):
            cfg = config(
                {
                    "bad": {"webhook": f"{bad.base}/x"},
                    "hung": {"webhook": f"{hung.base}/x", "timeout": "200ms"},
                }
            )
            async with running(tmp_path / "t.db", cfg, clock) as service:
                await service.submit([engine_alert("a1")])
                await flush(service)
                rows = await until(service, lambda rows: all(r["attempts"] for r in rows))
                hung.hang = False
                clock.advance(60)
                service.wake()
                await eventually(hung.accepted)
        by_receiver = {r["receiver"]: r for r in rows}
        assert (by_receiver["bad"]["state"], by_receiver["bad"]["lastError"]) == (
            "failed",
            "HTTP 400: unavailable",
        )
        assert len(bad.requests) == 1
        # The receiver saw the timed-out attempt and the retry: one delivery id, to deduplicate on.
        assert [r.delivery_id for r in hung.requests] == [by_receiver["hung"]["deliveryId"]] * 2

    asyncio.run(scenario())


def test_gives_up_after_the_configured_time_and_logs_no_secrets(tmp_path: Path, caplog) -> None:
    async def scenario() -> None:
        clock = FakeClock()
        replies = [(503, {"Retry-After": "30"})] * 3
        async with listening(HttpReceiver(replies=replies)) as receiver:
            cfg = config(
                {"ops": {"webhook": f"{receiver.base}/services/TOKEN", "secret": SECRET}}, give_up_after="1m"
            )
            async with running(tmp_path / "t.db", cfg, clock) as service:
                await service.submit([engine_alert("a1")])
                await flush(service)
                (row,) = await until(service, lambda rows: rows[0]["attempts"] == 1)
                assert row["nextAttemptAt"] == int((clock() + 30) * 1e6)  # Retry-After, not the backoff
                clock.advance(30)
                service.wake()
                (row,) = await until(service, lambda rows: rows[0]["state"] == "failed")
                attempts = await service.attempts(row["deliveryId"])
        assert [a["statusCode"] for a in attempts] == [503, 503]
        assert row["lastError"] == "HTTP 503: unavailable"
        assert "giving up" in caplog.text
        assert "TOKEN" not in caplog.text and SECRET not in caplog.text

    asyncio.run(scenario())


def test_outage_then_retry_after_then_recovery_across_a_restart(tmp_path: Path) -> None:
    """Every notification arrives exactly once per delivery id (after refusals and 503s), in order
    within its group, although the notifier restarted while they were pending."""

    async def scenario() -> None:
        clock = FakeClock()
        db = tmp_path / "t.db"
        receiver = HttpReceiver(replies=[(503, {"Retry-After": "7"})] * 2)
        receiver.reserve()  # bound, not listening: connection refused
        cfg = config(
            {"ops": {"webhook": f"{receiver.base}/hook", "secret": SECRET}},
            group_interval="1m",
            retry_initial="2s",
        )
        try:
            async with running(db, cfg, clock) as first:
                await first.submit([engine_alert("a1"), engine_alert("a2", service="payments")])
                await flush(first)
                rows = await until(first, lambda rows: len(rows) == 2 and all(r["attempts"] for r in rows))
                for row in rows:
                    assert row["state"] == "pending" and row["lastError"].startswith("cannot connect")
                    # Equal jitter: between half and all of the 2 s first backoff.
                    assert clock() + 1 <= row["nextAttemptAt"] / 1e6 <= clock() + 2
                await first.submit([engine_alert("a1", status="resolved")])
                clock.advance(60)
                assert len(await flush(first)) == 3
                # Stop once the refused retries at this time are recorded and nothing is due.
                await until(first, lambda rows: [r["attempts"] >= 2 for r in rows] == [True, True, False])
            # tracebox is down; the receiver comes back, answering 503 with Retry-After at first.
            await receiver.start()
            async with running(db, cfg, clock) as second:
                await second.submit([engine_alert("a2", service="payments")])  # open alerts, resubmitted
                clock.advance(10)
                second.wake()
                await eventually(lambda: len(receiver.requests) == 2)
                rows = await until(
                    second, lambda rows: sum((r["lastError"] or "").startswith("HTTP 503") for r in rows) == 2
                )
                retry_at = {r["nextAttemptAt"] for r in rows if (r["lastError"] or "").startswith("HTTP 503")}
                assert retry_at == {int((clock() + 7) * 1e6)}
                assert len(await flush(second)) == 3  # the notification log remembers a2 was sent
                clock.advance(7)
                second.wake()
                rows = await until(second, delivered)
        finally:
            await receiver.stop()
        accepted = receiver.accepted()
        assert sorted(r.delivery_id for r in accepted) == sorted(r["deliveryId"] for r in rows)
        assert len(accepted) == len(rows) == 3
        checkout = [r.json["status"] for r in accepted if r.json["groupLabels"]["service"] == "checkout"]
        assert checkout == ["firing", "resolved"]
        assert all(verify(SECRET, r.body, r.headers["X-Tracebox-Signature"], now=clock()) for r in accepted)
        async with running(db, cfg, clock) as third:
            assert await third.deliveries(state="pending") == []

    asyncio.run(scenario())


def test_a_malformed_alert_is_skipped(tmp_path: Path) -> None:
    async def scenario() -> None:
        cfg = config({"ops": {"webhook": "http://127.0.0.1:1/hook"}})
        async with running(tmp_path / "t.db", cfg, FakeClock(), start=False) as service:
            await service.submit([{"id": "broken"}, engine_alert("a1")])
            assert [r["alertIds"] for r in await flush(service)] == [["a1"]]

    asyncio.run(scenario())


def test_send_test_alert(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with listening() as receiver, listening(HttpReceiver(replies=[(500, {})])) as broken:
            cfg = config(
                {
                    "ops": {"webhook": f"{receiver.base}/hook", "secret": SECRET},
                    "down": {"webhook": f"{broken.base}/x"},
                }
            )
            results = await send_test_alert(cfg)
            only = await send_test_alert(cfg, "ops")
        assert [(r.receiver, r.ok, r.status) for r in results] == [("ops", True, 200), ("down", False, 500)]
        assert results[1].error == "HTTP 500: unavailable"
        assert len(only) == 1 and only[0].ok
        got = receiver.accepted()[0]
        assert verify(SECRET, got.body, got.headers["X-Tracebox-Signature"])
        assert got.json["alerts"][0]["labels"]["service"] == "tracebox-test"

    asyncio.run(scenario())
