"""The anomaly engine: each detector on small deterministic traffic, lifecycle, resume, replay."""

from __future__ import annotations

import math
import random
from typing import Any

import apsw
import pytest

from tracebox.detectors import alert_store
from tracebox.detectors.accumulators import DURATION_SAMPLE, OpWindow
from tracebox.detectors.config import EngineConfig
from tracebox.detectors.engine import Engine, span_record
from tracebox.detectors.evaluate import run
from tracebox.detectors.synth import DAY, Traffic, schedule

US = 1_000_000
T0 = 1_700_000_000 // DAY * DAY
MINUTE = 60


class Builder:
    """Deterministic spans: `rate` requests per second with lognormal durations."""

    def __init__(self, seed: int = 1) -> None:
        self.rng = random.Random(seed)

    def id(self) -> str:
        return f"{self.rng.getrandbits(64):016x}"

    def span(self, service: str, name: str, ts: int, duration: int, **extra: Any) -> dict[str, Any]:
        span = {
            "traceId": extra.pop("trace", None) or self.id(),
            "id": extra.pop("id", None) or self.id(),
            "name": name,
            "timestamp": ts,
            "duration": max(int(duration), 1),
            "localEndpoint": {"serviceName": service},
        }
        span.update(extra)
        return span

    def each(self, seconds: range, rate: float) -> list[int]:
        """Request start times: `rate` per second (fractional rates spread evenly)."""
        out = []
        for s in seconds:
            whole = int(rate) + (1 if self.rng.random() < rate - int(rate) else 0)
            out += [(T0 + s) * US + self.rng.randrange(US) for _ in range(whole)]
        return sorted(out)


def feed(engine: Engine, items: list, batch: int = 500) -> list:
    changes = []
    for i in range(0, len(items), batch):
        changes += engine.process([span_record(span, llm) for span, llm in items[i : i + batch]])
    return changes


def fired(changes: list, kind: str | None = None) -> list[dict[str, Any]]:
    return [c.alert for c in changes if c.change == "fired" and (kind is None or c.alert["kind"] == kind)]


def latency_traffic(
    b: Builder,
    minutes: int,
    rate: float,
    slow_from: int | None = None,
    factor: float = 3.0,
    slow_until: int = 10**6,
) -> list:
    items = []
    for ts in b.each(range(minutes * MINUTE), rate):
        faulty = (
            slow_from is not None and (T0 + slow_from * MINUTE) * US <= ts < (T0 + slow_until * MINUTE) * US
        )
        slow = factor if faulty else 1.0
        duration = 20_000 * slow * b.rng.lognormvariate(0, 0.3)
        items.append((b.span("api", "get /x", ts, duration, kind="SERVER"), None))
    return items


# -- latency -------------------------------------------------------------------------------------


def test_latency_fires_on_slowdown_and_not_before() -> None:
    changes = feed(Engine(), latency_traffic(Builder(), 40, 5, slow_from=30))
    alerts = fired(changes)
    assert [(a["kind"], a["service"], a["operation"]) for a in alerts] == [("latency", "api", "get /x")]
    alert = alerts[0]
    assert (T0 + 30 * MINUTE - 10) * US <= alert["startedAt"] <= (T0 + 31 * MINUTE) * US
    assert alert["observed"]["medianUs"] > 2 * alert["expected"]["medianUs"]
    assert alert["traceIds"] and alert["status"] == "firing"


def test_latency_quiet_on_noise() -> None:
    assert fired(feed(Engine(), latency_traffic(Builder(2), 60, 5))) == []


def test_a_busy_window_keeps_a_bounded_uniform_sample_of_durations() -> None:
    """100,000 spans in one operation's window: 4,096 durations kept, the same ones in a replay,
    their median and p90 within 3 % of the whole window's."""
    b = Builder(9)
    spans = [
        b.span("api", "get /x", T0 * US, 20_000 * b.rng.lognormvariate(0, 0.5), kind="SERVER")
        for _ in range(100_000)
    ]
    windows = []
    for _ in range(2):
        window = OpWindow()
        for span in spans:
            window.add_duration(span["duration"], span["id"])
        windows.append(window)
    kept = windows[0].durations
    assert len(kept) == DURATION_SAMPLE and windows[0].timed == len(spans)
    assert kept == windows[1].durations
    whole = sorted(s["duration"] for s in spans)
    sample = sorted(kept)
    for q in (0.5, 0.9):
        truth = whole[int(q * len(whole))]
        assert abs(sample[int(q * len(sample))] / truth - 1) < 0.03


def test_a_latency_alert_counts_every_span_not_the_sample() -> None:
    changes = feed(Engine(), latency_traffic(Builder(), 8, 450, slow_from=6), batch=5000)
    [alert] = fired(changes)
    assert alert["observed"]["count"] > DURATION_SAMPLE  # ~4,500 spans in a ten-second window
    assert alert["observed"]["medianUs"] > 2 * alert["expected"]["medianUs"]


def test_latency_low_traffic_stays_quiet_and_says_so() -> None:
    engine = Engine()
    changes = feed(engine, latency_traffic(Builder(), 40, 0.05, slow_from=30, factor=10))
    assert fired(changes) == []
    statuses = {r["status"] for r in engine.baselines() if r["kind"] == "latency"}
    assert statuses == {"insufficient_traffic"}


def test_slow_dependency_is_blamed_on_the_dependency_not_the_caller() -> None:
    b = Builder()
    items = []
    for ts in b.each(range(40 * MINUTE), 5):
        slow = 4 if ts >= (T0 + 30 * MINUTE) * US else 1
        db = 10_000 * slow * b.rng.lognormvariate(0, 0.3)
        trace, server = b.id(), b.id()
        client = b.span(
            "api",
            "select",
            ts + 1000,
            db,
            trace=trace,
            parentId=server,
            kind="CLIENT",
            remoteEndpoint={"serviceName": "db"},
        )
        own = 5_000 * b.rng.lognormvariate(0, 0.3)
        items.append((client, None))
        items.append((b.span("api", "get /x", ts, db + own, trace=trace, id=server, kind="SERVER"), None))
    alerts = fired(feed(Engine(), items))
    assert [(a["service"], a["operation"], a["labels"]["view"]) for a in alerts] == [
        ("db", "select", "client")
    ]


# -- errors --------------------------------------------------------------------------------------


def error_traffic(b: Builder, minutes: int, rate: float, burst_from: int | None, burst: float = 0.3) -> list:
    items = []
    for ts in b.each(range(minutes * MINUTE), rate):
        p = burst if burst_from is not None and ts >= (T0 + burst_from * MINUTE) * US else 0.01
        tags = {"error": "500"} if b.rng.random() < p else {}
        items.append((b.span("pay", "post /charge", ts, 30_000, kind="SERVER", tags=tags), None))
    return items


def test_error_burst_fires() -> None:
    alerts = fired(feed(Engine(), error_traffic(Builder(), 40, 3, burst_from=30)))
    assert [(a["kind"], a["service"]) for a in alerts] == [("error", "pay")]
    assert alerts[0]["observed"]["errorRatio"] > 0.15


def test_error_noise_and_low_traffic_stay_quiet() -> None:
    assert fired(feed(Engine(), error_traffic(Builder(3), 60, 3, burst_from=None))) == []
    assert fired(feed(Engine(), error_traffic(Builder(4), 40, 0.02, burst_from=30, burst=1.0))) == []


# -- LLM: token cost and finish reasons --------------------------------------------------------------


def llm_traffic(
    b: Builder,
    minutes: int,
    rate: float,
    fault_from: int = 10**9,
    *,
    inputs: float = 1.0,
    model: str = "mini",
    length: float = 0.02,
    user: str | None = None,
) -> list:
    price = {"mini": 0.5e-6, "big": 8e-6}
    items = []
    for ts in b.each(range(minutes * MINUTE), rate):
        faulty = ts >= (T0 + fault_from * MINUTE) * US
        m = model if faulty else "mini"
        tokens = int(2000 * (inputs if faulty else 1.0) * b.rng.lognormvariate(0, 0.2))
        reason = "length" if b.rng.random() < (length if faulty else 0.02) else "stop"
        trace, server = b.id(), b.id()
        tags = {"user.id": user if faulty and user else f"u{b.rng.randrange(5)}"}
        call = b.span(
            "bot",
            f"chat {m}",
            ts + 1000,
            800_000,
            trace=trace,
            parentId=server,
            kind="CLIENT",
            remoteEndpoint={"serviceName": "llm"},
            tags=tags,
        )
        llm = {
            "response_model": m,
            "input_tokens": tokens,
            "output_tokens": 200,
            "finish_reasons": [reason],
            "cost_usd": tokens * price[m],
        }
        items.append((call, llm))
        items.append((b.span("bot", "post /ask", ts, 900_000, trace=trace, id=server, kind="SERVER"), None))
    return sorted(items, key=lambda item: item[0]["timestamp"] + item[0]["duration"])


@pytest.mark.parametrize(
    ("fault", "signal"),
    [({"inputs": 3.0}, "input_tokens"), ({"model": "big"}, "cost_per_request")],
)
def test_token_cost_fires_on_context_growth_and_model_swap(fault: dict, signal: str) -> None:
    alerts = fired(feed(Engine(), llm_traffic(Builder(), 40, 2, 30, **fault)), "token_cost")
    assert [(a["service"], a["operation"], a["labels"]["signal"]) for a in alerts] == [
        ("bot", "post /ask", signal)
    ]


def test_token_cost_catches_a_runaway_caller() -> None:
    since = (T0 + 30 * MINUTE) * US
    loop = [i for i in llm_traffic(Builder(9), 40, 6, 30, user="u1") if i[0]["timestamp"] >= since]
    items = sorted(llm_traffic(Builder(), 40, 2) + loop, key=lambda i: i[0]["timestamp"] + i[0]["duration"])
    alerts = fired(feed(Engine(), items), "token_cost")
    assert [(a["service"], a["operation"], a["labels"]["signal"]) for a in alerts] == [
        ("bot", "user.id=u1", "spend")
    ]


def test_token_cost_quiet_on_noise_and_under_the_absolute_floor() -> None:
    assert fired(feed(Engine(), llm_traffic(Builder(5), 60, 2))) == []
    # the same tripling of tokens (about +$15/h) under floors it does not reach stays quiet
    cheap = EngineConfig(token_min_input_delta=10**6, token_min_spend_per_hour=100.0)
    assert fired(feed(Engine(cheap), llm_traffic(Builder(), 40, 2, 30, inputs=3.0))) == []


def test_finish_reason_shift_fires_and_low_traffic_stays_quiet() -> None:
    alerts = fired(feed(Engine(), llm_traffic(Builder(), 40, 2, 30, length=0.5)), "finish_reason")
    assert [(a["operation"], a["labels"]["reason"], a["labels"]["model"]) for a in alerts] == [
        ("post /ask", "length", "mini")
    ]
    assert fired(feed(Engine(), llm_traffic(Builder(), 40, 0.02, 30, length=0.9))) == []


# -- lifecycle, config, resume, replay ------------------------------------------------------------


def test_alert_is_grouped_then_resolves() -> None:
    items = latency_traffic(Builder(), 60, 5, slow_from=30, slow_until=40)
    changes = feed(Engine(), items)
    kinds = [c.change for c in changes]
    assert kinds.count("fired") == 1 and kinds.count("resolved") == 1 and kinds.count("updated") > 10
    resolved = changes[kinds.index("resolved")].alert
    assert resolved["status"] == "resolved"
    assert (T0 + 39 * MINUTE) * US <= resolved["endedAt"] <= (T0 + 42 * MINUTE) * US
    assert {c.alert["id"] for c in changes} == {resolved["id"]}


def test_overrides_mute_and_desensitise() -> None:
    muted = EngineConfig.from_dict({"services": {"api": {"mute": True}}})
    engine = Engine(muted)
    assert fired(feed(engine, latency_traffic(Builder(), 40, 5, slow_from=30))) == []
    assert {r["status"] for r in engine.baselines()} == {"muted"}
    per_op = EngineConfig.from_dict({"services": {"api": {"operations": {"get /x": {"sensitivity": 0.1}}}}})
    assert fired(feed(Engine(per_op), latency_traffic(Builder(), 40, 5, slow_from=30, factor=1.6))) == []
    with pytest.raises(ValueError, match="unknown"):
        EngineConfig.from_dict({"services": {"api": {"sensitivty": 2}}})


@pytest.fixture(scope="module")
def mixed_traffic() -> list:
    faults = schedule(T0, 1.6, 45 * 60, 240, 120)
    return list(Traffic(T0, 1.6, faults, seed=3).spans())


def as_tuples(changes: list) -> list:
    return [(c.change, c.alert) for c in changes]


def test_replay_in_any_batch_split_gives_the_same_alerts(mixed_traffic: list) -> None:
    reference = as_tuples(feed(Engine(), mixed_traffic, batch=1000))
    assert len([c for c in reference if c[0] == "fired"]) >= 4
    assert as_tuples(feed(Engine(), mixed_traffic, batch=1)) == reference
    assert as_tuples(feed(Engine(), mixed_traffic, batch=7777)) == reference


def test_snapshot_restore_resumes_exactly(mixed_traffic: list) -> None:
    reference = as_tuples(feed(Engine(), mixed_traffic))
    cut = len(mixed_traffic) * 2 // 3
    first = Engine()
    before = as_tuples(feed(first, mixed_traffic[:cut]))
    resumed = Engine.restore(EngineConfig(), first.snapshot())
    after = as_tuples(feed(resumed, mixed_traffic[cut:]))
    assert before + after == reference
    with pytest.raises(ValueError):
        Engine.restore(EngineConfig(window_seconds=30), first.snapshot())


def test_alert_store_round_trip(tmp_path: Any, mixed_traffic: list) -> None:
    conn = apsw.Connection(str(tmp_path / "t.db"))
    conn.execute(alert_store.DDL)
    engine = Engine()
    cut = len(mixed_traffic) // 2
    changes = feed(engine, mixed_traffic[:cut])
    alert_store.commit_progress(conn, cut, engine.snapshot(), changes)
    cursor, snapshot = alert_store.load_state(conn)
    assert cursor == cut
    engine = Engine.restore(None, snapshot)
    alert_store.commit_progress(
        conn, len(mixed_traffic), engine.snapshot(), feed(engine, mixed_traffic[cursor:])
    )
    final = {c.alert["id"]: c.alert for c in feed(Engine(), mixed_traffic)}
    stored = alert_store.list_alerts(conn, limit=1000)
    assert {a["id"]: a for a in stored} == final
    one = next(iter(final.values()))
    assert alert_store.get_alert(conn, one["id"]) == one
    assert alert_store.get_alert(conn, "nope") is None
    assert all(a["kind"] == "latency" for a in alert_store.list_alerts(conn, kind="latency"))
    assert all(a["status"] == "resolved" for a in alert_store.list_alerts(conn, status="resolved"))
    assert alert_store.list_alerts(conn, service="no-such") == []
    last_end = max(a["endedAt"] or a["startedAt"] for a in final.values())
    assert alert_store.list_alerts(conn, start=last_end + 1) == [a for a in stored if a["endedAt"] is None]
    assert set(final[stored[0]["id"]]) >= {
        "id",
        "kind",
        "service",
        "operation",
        "status",
        "startedAt",
        "endedAt",
        "expected",
        "observed",
        "score",
        "traceIds",
    }


def test_quick_evaluation_meets_targets() -> None:
    report = run(3.0)
    assert report.meets_targets(), report.scores
    assert all(math.isfinite(s.false_per_hour) for s in report.scores.values())
