"""Crash tests of the durability contract (README, "What an acknowledgement means").

A bounded load generator posts numbered spans, in batches of various sizes, while the server is
stopped at random moments and restarted on the same database file, several times:

- ``SIGKILL``: every span whose request got a 2xx is in the database exactly once, with the
  content that encodes its number; spans of requests without an answer may or may not be there
  (never twice), and the database passes ``PRAGMA integrity_check``.
- ``SIGTERM``: the same, and more: the server exits 0 after draining, every request it read got
  an answer (2xx, or a clean 429/503 refusal); a request that failed at the connection level
  was never read, so none of its spans may be stored.

Each number is posted once, so "exactly once" also catches a request stored twice. The short
versions run in the default suite (a few kills, well under 30 s each); ``-m slow`` runs long ones.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import requests

from tests.conftest import Tracebox, start_tracebox
from tests.spans import NOW_US
from tracebox.appliance.store import connect
from tracebox.appliance.store.rows import SPAN_COLUMNS, span_from_row

BATCH_SIZES = (1, 2, 5, 20, 100, 500, 1000)


def span_for(run: int, number: int) -> dict:
    """Span ``number``: its ids and content all encode the number, so a mix-up shows."""
    return {
        "traceId": f"{run:08x}{number // 4:08x}",  # four spans to a trace, mixed across batches
        "id": f"{number + 1:016x}",
        "name": f"n{number}",
        "kind": "SERVER",
        "timestamp": NOW_US + number,
        "duration": number + 1,
        "localEndpoint": {"serviceName": "crash"},
        "tags": {"n": str(number), "pad": "x" * (number % 64)},
    }


@dataclass
class Outcomes:
    acked: set[int] = field(default_factory=set)
    refused: set[int] = field(default_factory=set)  # 429/503: stored nothing
    unanswered: set[int] = field(default_factory=set)  # connection error, timeout
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)  # anything else: a failure


class LoadGenerator:
    """Threads posting numbered batches to whatever port the server currently has."""

    def __init__(self, server: Tracebox, run: int, threads: int, max_seconds: float) -> None:
        self.server = server
        self.run = run
        self.outcomes = Outcomes()
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._deadline = time.monotonic() + max_seconds
        self._threads = [
            threading.Thread(target=self._post_loop, args=(i,), daemon=True) for i in range(threads)
        ]

    def __enter__(self) -> LoadGenerator:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(60)
        assert not any(t.is_alive() for t in self._threads), "a poster hung"

    def _numbers(self, count: int) -> range:
        with self._lock:
            first = self._next
            self._next += count
        return range(first, first + count)

    @property
    def sent(self) -> int:
        return self._next

    def _post_loop(self, seed: int) -> None:
        rng = random.Random(seed)
        session = requests.Session()
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            numbers = self._numbers(rng.choice(BATCH_SIZES))
            body = orjson.dumps([span_for(self.run, n) for n in numbers])
            port = self.server.ports.get("http")
            try:
                response = session.post(
                    f"http://127.0.0.1:{port}/api/v2/spans",
                    data=body,
                    headers={"Content-Type": "application/json"},
                    timeout=30,
                )
            except requests.RequestException as exc:
                self._record(numbers, "unanswered", type(exc).__name__)
                session.close()
                session = requests.Session()
                time.sleep(0.05)  # the server is down or restarting
                continue
            status = response.status_code
            if 200 <= status < 300:
                self._record(numbers, "acked", status)
            elif status in (429, 503) and response.headers.get("Retry-After"):
                self._record(numbers, "refused", status)
            else:
                self._record(numbers, "bad", f"{status} {response.text[:200]}")

    def _record(self, numbers: range, outcome: str, detail: object) -> None:
        o = self.outcomes
        with self._lock:
            if outcome == "acked":
                o.acked.update(numbers)
                o.statuses[detail] += 1
            elif outcome == "refused":
                o.refused.update(numbers)
                o.statuses[detail] += 1
            elif outcome == "unanswered":
                o.unanswered.update(numbers)
                o.errors[detail] += 1
            else:
                o.bad.append(str(detail))


def stored_spans(db: Path) -> Counter:
    """(trace id, span id, span JSON) -> copies, read from the file itself, read-only (each row
    turned back into Zipkin JSON as the store reads it: ids, names and times live in columns)."""
    conn = connect(db, readonly=True)  # with span_json, which reads compressed blobs
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return Counter(
            (row[0], row[2], orjson.dumps(span_from_row(*row)))
            for row in conn.execute(f"SELECT {SPAN_COLUMNS} FROM spans")
        )
    finally:
        conn.close()


def check_stored(db: Path, run: int, load: LoadGenerator) -> dict[int, int]:
    """Every acked number stored exactly once with its own content; nothing stored twice."""
    copies: dict[int, int] = {}
    for (trace_id, span_id, json), count in stored_spans(db).items():
        stored = orjson.loads(json)
        number = int(span_id, 16) - 1
        expected = span_for(run, number)
        assert trace_id == expected["traceId"] and stored["traceId"] == trace_id
        assert stored["name"] == expected["name"] and stored["tags"] == expected["tags"], stored
        assert stored["timestamp"] == expected["timestamp"] and stored["duration"] == expected["duration"]
        copies[number] = copies.get(number, 0) + count
    outcomes = load.outcomes
    twice = {n: c for n, c in copies.items() if c > 1}
    assert not twice, f"spans stored more than once: {sorted(twice)[:20]}"
    lost = outcomes.acked - copies.keys()
    assert not lost, f"{len(lost)} acknowledged spans lost, e.g. {sorted(lost)[:20]}"
    refused_but_stored = outcomes.refused & copies.keys()
    assert not refused_but_stored, f"refused spans stored: {sorted(refused_but_stored)[:20]}"
    assert copies.keys() <= set(range(load.sent)), "a span nobody sent"
    return copies


def sample_via_api(server: Tracebox, run: int, numbers: set[int], count: int = 30) -> None:
    """A sample of acknowledged spans, read back through the query API of the restarted server."""
    for number in random.Random(run).sample(sorted(numbers), min(count, len(numbers))):
        expected = span_for(run, number)
        trace = server.get_json(f"/api/v2/trace/{expected['traceId']}")
        mine = [s for s in trace if s["id"] == expected["id"]]
        assert len(mine) == 1 and mine[0]["name"] == expected["name"], (number, trace)


def crash_run(tmp_path: Path, sig: int, kills: int, threads: int, min_gap: float, max_gap: float) -> None:
    run = random.randrange(1, 1 << 31)
    db = tmp_path / "crash.db"
    server = start_tracebox(db)
    exit_codes: list[int] = []
    budget_s = 60.0 + kills * (max_gap + 15)
    try:
        with LoadGenerator(server, run, threads, max_seconds=budget_s) as load:
            rng = random.Random(run)
            for _ in range(kills):
                time.sleep(rng.uniform(min_gap, max_gap))
                exit_codes.append(server.stop(sig, timeout=30))
                server.start()
            time.sleep(min_gap)  # the last restart takes load too
        outcomes = load.outcomes
        assert not outcomes.bad, f"unexpected answers: {outcomes.bad[:5]}"
        assert len(outcomes.acked) > 100, f"too little load to mean anything: {outcomes}"
        sample_via_api(server, run, outcomes.acked)
    finally:
        final = server.stop(signal.SIGTERM)
    assert final == 0, "".join(server.log[-20:])
    copies = check_stored(db, run, load)
    if sig == signal.SIGTERM:
        assert exit_codes == [0] * kills, exit_codes
        assert "tracebox: stopped" in "".join(server.log)
        cut_off = outcomes.unanswered & copies.keys()
        assert not cut_off, f"requests read and stored but never answered: {sorted(cut_off)[:20]}"
    else:
        assert all(code == -signal.SIGKILL for code in exit_codes), exit_codes
    print(
        f"\n{signal.Signals(sig).name} x{kills}: {load.sent} spans sent, {len(outcomes.acked)} acknowledged, "
        f"{len(outcomes.refused)} refused, {len(outcomes.unanswered)} unanswered "
        f"({dict(outcomes.errors)}), {len(copies)} stored, statuses {dict(outcomes.statuses)}"
    )


def test_sigkill_loses_no_acknowledged_span(tmp_path):
    crash_run(tmp_path, signal.SIGKILL, kills=3, threads=6, min_gap=0.4, max_gap=1.5)


def test_sigterm_drains_everything_in_flight(tmp_path):
    crash_run(tmp_path, signal.SIGTERM, kills=3, threads=6, min_gap=0.4, max_gap=1.5)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_loses_no_acknowledged_span_long(tmp_path):
    crash_run(tmp_path, signal.SIGKILL, kills=15, threads=12, min_gap=0.1, max_gap=4.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigterm_drains_everything_in_flight_long(tmp_path):
    crash_run(tmp_path, signal.SIGTERM, kills=15, threads=12, min_gap=0.1, max_gap=4.0)
