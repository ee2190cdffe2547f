"""The anomaly engine inside a live server: same alerts as in-process, through restarts and replays."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import orjson
import pytest
import requests

from tests.conftest import start_tracebox
from tracebox.appliance import demo
from tracebox.appliance.genai import extract_llm
from tracebox.appliance.model import normalize_span
from tracebox.appliance.replay import in_report_order
from tracebox.appliance.store import connect
from tracebox.detectors.engine import Engine, span_record
from tracebox.detectors.runner import read_after
from tracebox.detectors.synth import DAY, Fault, Traffic

START = 1_700_000_000 // DAY * DAY
BURST = Fault("error_burst", frozenset({"error"}), "payments", START + 30 * 60, START + 36 * 60)
LENGTH = Fault("max_tokens_low", frozenset({"finish_reason"}), "chat", START + 40 * 60, START + 46 * 60)
POST_TIMEOUT_S = 60
#: The synthetic traffic is from 2023: keep it from the default 7-day retention.
KEEP_HISTORY = ("--retention-days", "0")
DRAIN_TIMEOUT_S = 120


def traffic(hours: float = 0.9, scale: float = 1.0) -> list[dict]:
    """Synthetic shop + LLM chat traffic with an error burst and a finish-reason shift, in report order."""
    return [
        normalize_span(span)
        for span, _ in Traffic(START, hours, [BURST, LENGTH], seed=11, scale=scale).spans()
    ]


def expected_alerts(spans: list[dict]) -> dict[str, dict]:
    """What the engine says when fed in-process, with the LLM fields the store extracts."""
    engine = Engine()
    alerts: dict[str, dict] = {}
    for i in range(0, len(spans), 2000):
        for change in engine.process([span_record(s, extract_llm(s)) for s in spans[i : i + 2000]]):
            alerts[change.alert["id"]] = change.alert
    return alerts


def post(server, spans: list[dict], batch: int = 2000) -> None:
    session = requests.Session()
    for i in range(0, len(spans), batch):
        body = orjson.dumps(spans[i : i + batch])
        response = session.post(
            server.url + "/api/v2/spans",
            data=body,
            headers={"Content-Type": "application/json"},
            timeout=POST_TIMEOUT_S,
        )
        assert response.status_code == 202, response.text


def drained(server, spans: int) -> dict:
    """Wait (bounded) until the engine has processed every committed span."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        status = server.get_json("/api/tracebox/engine")
        if status["lagSpans"] == 0 and status["cursor"] >= spans:
            return status
        time.sleep(0.2)
    raise AssertionError(f"engine did not catch up: {status}")


def served_alerts(server) -> dict[str, dict]:
    return {a["id"]: a for a in server.get_json("/api/tracebox/alerts", limit=1000)}


def comparable(alerts: dict[str, dict]) -> set[tuple]:
    return {
        (a["id"], a["kind"], a["service"], a["operation"], a["status"], a["startedAt"], a["endedAt"])
        for a in alerts.values()
    }


@pytest.fixture(scope="module")
def spans() -> list[dict]:
    return traffic()


@pytest.fixture(scope="module")
def expected(spans) -> dict[str, dict]:
    found = expected_alerts(spans)
    kinds = {(a["kind"], a["service"]) for a in found.values()}
    assert ("error", "payments") in kinds and ("finish_reason", "chat") in kinds, kinds
    return found


def test_the_engine_reads_stored_spans_as_the_spans_posted(tmp_path):
    """The runner's records of committed spans (the store's columns, the LLM call from its row) are
    ``span_record`` of the spans as posted, with ``extract_llm``'s answer: one engine, fed alike
    from the store and in process."""
    spans = [normalize_span(span) for trace in demo.generate_traces(40, seed=3) for span in trace]
    llm_spans = [span for span in spans if extract_llm(span)]
    for n, span in enumerate(llm_spans[::2]):  # callers on some calls, as gateways tag them
        span["tags"] |= {"user.id": f"u{n % 3}", "tenant.id": "acme"} if n % 2 else {"enduser.id": "u9"}
    quiet = next(span for span in spans if "error" not in span.get("tags", {}))
    quiet.setdefault("tags", {})["otel.status_code"] = "ERROR"  # a status without an error tag: no error
    server = start_tracebox(tmp_path / "t.db", "--no-engine")
    try:
        post(server, spans)
    finally:
        server.stop()
    records = read_after(connect(tmp_path / "t.db", readonly=True), 0, 10 * len(spans))
    expected = [span_record(span, extract_llm(span)) for span in spans]
    assert [record[1:] for record in records] == [record[1:] for record in expected]
    calls = [record[-1] for record in records if record[-1] is not None]
    assert len(calls) == len(llm_spans)
    assert {call[4] for call in calls} >= {("user.id=u1", "tenant.id=acme"), ()}  # with their callers
    assert any(record[10] for record in records)  # and errors marked


def test_server_raises_the_alerts_the_engine_computes(tmp_path, spans, expected):
    server = start_tracebox(tmp_path / "t.db", *KEEP_HISTORY)
    try:
        post(server, spans)
        status = drained(server, len(spans))
        assert status["spansProcessed"] == len(spans)
        got = served_alerts(server)
        assert comparable(got) == comparable(expected)
        burst = next(a for a in got.values() if a["kind"] == "error" and a["service"] == "payments")
        assert BURST.start * 1_000_000 <= burst["startedAt"] <= BURST.end * 1_000_000
        assert burst["traceIds"] and burst["expected"] and burst["observed"]
        one = server.get_json(f"/api/tracebox/alerts/{burst['id']}")
        assert one == got[burst["id"]]
        firing = server.get_json("/api/tracebox/alerts", kind="error", service="payments")
        assert [a["id"] for a in firing] == [burst["id"]]
    finally:
        server.stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_cursor_resumes_after_a_restart(tmp_path, spans, expected, sig):
    server = start_tracebox(tmp_path / "t.db", *KEEP_HISTORY)
    try:
        half = len(spans) // 2
        post(server, spans[:half])
        drained(server, half)
        server.stop(sig)
        server.start()
        post(server, spans[half:])
        status = drained(server, len(spans))
        assert status["cursor"] >= len(spans)
        assert comparable(served_alerts(server)) == comparable(expected)
    finally:
        server.stop()


def test_replay_command_gives_the_alerts_of_live_ingest(tmp_path, spans):
    capture = tmp_path / "capture.jsonl"
    shuffled = spans[1::2] + spans[::2]  # files need not be in order: replay sorts by end time
    with capture.open("wb") as out:
        for i in range(0, len(shuffled), 5000):
            out.write(orjson.dumps(shuffled[i : i + 5000]) + b"\n")
    server = start_tracebox(tmp_path / "t.db", *KEEP_HISTORY)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "tracebox.appliance.cli", "replay", str(capture), "--url", server.url],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        drained(server, len(spans))
        got = served_alerts(server)
        assert {(a["kind"], a["service"]) for a in got.values()} >= {
            ("error", "payments"),
            ("finish_reason", "chat"),
        }
        # the same spans ingested live in the order SDKs would report them raise the same alerts
        assert comparable(got) == comparable(expected_alerts(in_report_order(spans)))
    finally:
        server.stop()


def test_bad_alert_queries(tracebox):
    for params, message in (
        ({"kind": "cpu"}, "kind should be one of"),
        ({"start": "soon"}, "start should be an integer"),
    ):
        response = tracebox.get("/api/tracebox/alerts", **params)
        assert response.status_code == 400 and message in response.text
    assert tracebox.get("/api/tracebox/alerts/nope").status_code == 404
    assert json.loads(tracebox.get("/api/tracebox/engine").text)["lagSpans"] >= 0
