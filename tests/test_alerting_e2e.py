"""Alerts from a live server reach a real webhook receiver; silences and test-webhook through the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import start_tracebox
from tests.test_engine_server import BURST, KEEP_HISTORY, drained, post, traffic
from tests.test_insights import Trace, db
from tracebox.appliance.insights import N_PLUS_ONE
from tracebox.appliance.insights.rollup import WINDOW_US

SECRET = "whsec-test-1"
WAIT_S = 60


class Receiver:
    """A loopback HTTP server in a thread that records every POST."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                received.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, predicate, timeout: float = WAIT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [r for r in list(self.requests) if predicate(r)]
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"no matching request in {timeout}s; got {len(self.requests)}")

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def config_file(tmp_path, receiver_url: str) -> str:
    path = tmp_path / "tracebox.toml"
    path.write_text(
        f"""
[alerts]
group_wait = "0s"
group_interval = "1s"
[alerts.receivers.ops]
webhook = "{receiver_url}/hook"
secret = "{SECRET}"
"""
    )
    return str(path)


def verify(headers: dict[str, str], body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in headers["X-Tracebox-Signature"].split(","))
    expected = hmac.new(SECRET.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


def test_an_error_burst_is_delivered_to_the_webhook(tmp_path, receiver):
    public = "https://tracebox.example.com"
    server = start_tracebox(
        tmp_path / "t.db",
        "--config",
        config_file(tmp_path, receiver.url),
        "--public-url",
        public,
        *KEEP_HISTORY,
    )
    try:
        spans = traffic()
        post(server, spans)
        drained(server, len(spans))
        [(path, headers, body), *_] = receiver.wait_for(
            lambda r: any(a["labels"].get("service") == "payments" for a in json.loads(r[2])["alerts"])
        )
        payload = json.loads(body)
        assert path == "/hook" and payload["version"] == "4" and payload["receiver"] == "ops"
        alert = next(a for a in payload["alerts"] if a["labels"]["service"] == "payments")
        assert alert["labels"]["kind"] == "error"
        assert alert["status"] in ("firing", "resolved")
        assert alert["generatorURL"] == f"{public}/alerts/{alert['fingerprint']}"
        assert verify(headers, body)
        assert headers["X-Tracebox-Delivery"]
        deliveries = server.get_json("/api/tracebox/deliveries", receiver="ops")
        assert any(d["state"] == "delivered" for d in deliveries)
        [ops] = server.get_json("/api/tracebox/receivers")
        assert SECRET not in json.dumps(ops) and "/hook" not in json.dumps(ops)
        started = BURST.start * 1_000_000
        assert any(
            a["startedAt"] >= started for a in server.get_json("/api/tracebox/alerts", service="payments")
        )
    finally:
        server.stop()


def _orders_trace(n: int, start_us: int, n_plus_one: bool) -> list[dict]:
    """A shop request with one query, or with the same query repeated per item (an N+1)."""
    t = Trace(f"{0xE2E0000 + n:032x}")
    root = t.add(name="get /orders", service="shop", kind="SERVER", ms=60)
    db(t, root, 1, "SELECT * FROM orders WHERE user_id = 7", ms=5)
    for i in range(8 if n_plus_one else 0):
        db(t, root, 10 + i * 3, f"SELECT * FROM items WHERE order_id = {i + 100}", name="select items")
    offset = start_us - t.spans[0]["timestamp"]
    for span in t.spans:
        span["timestamp"] += offset
    return t.spans


def test_a_rising_trace_pattern_is_delivered_to_the_webhook(tmp_path, receiver):
    """The insights rollup's alerts go out like the engine's: an hour of requests without N+1, then
    a five-minute window where most have it, reaches the receiver as a pattern alert."""
    first = (time.time_ns() // 1000 - 3 * 3_600_000_000) // WINDOW_US * WINDOW_US
    spans = []
    for window in range(12):  # the baseline hour
        for n in range(12):
            spans += _orders_trace(window * 100 + n, first + window * WINDOW_US + n * 1_000_000, False)
    for n in range(12):  # the rise
        spans += _orders_trace(1200 + n, first + 12 * WINDOW_US + n * 1_000_000, n % 3 != 0)
    spans += _orders_trace(1400, first + 14 * WINDOW_US, False)  # moves event time past the rise
    server = start_tracebox(tmp_path / "t.db", "--config", config_file(tmp_path, receiver.url))
    try:
        post(server, spans)
        [(_path, headers, body), *_] = receiver.wait_for(
            lambda r: any(a["labels"].get("kind") == "pattern" for a in json.loads(r[2])["alerts"])
        )
        alert = next(a for a in json.loads(body)["alerts"] if a["labels"]["kind"] == "pattern")
        assert alert["labels"]["alertname"] == "TracePatternRise"
        assert alert["labels"]["service"] == "shop" and alert["labels"]["operation"] == "get /orders"
        assert alert["labels"]["pattern"] == N_PLUS_ONE
        assert "trace pattern" in alert["annotations"]["summary"]
        assert verify(headers, body)
        [stored] = server.get_json("/api/tracebox/alerts", kind="pattern")
        assert stored["startedAt"] == first + 12 * WINDOW_US
    finally:
        server.stop()


def test_silences_through_the_cli(tmp_path, receiver):
    server = start_tracebox(tmp_path / "t.db", "--config", config_file(tmp_path, receiver.url))
    try:
        cli = [sys.executable, "-m", "tracebox.appliance.cli", "alerts", "silence"]
        added = subprocess.run(
            [*cli, "add", "service=payments", "--duration", "2h", "--comment", "deploy", "--url", server.url],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        silence_id = added.stdout.split()[1]
        [listed] = server.get_json("/api/tracebox/silences")
        assert (listed["id"] == silence_id and listed["matchers"] == ['service="payments"']) or listed[
            "matchers"
        ]
        assert listed["state"] == "active" and listed["comment"] == "deploy"
        subprocess.run(
            [*cli, "expire", silence_id, "--url", server.url], check=True, capture_output=True, timeout=60
        )
        assert server.get_json("/api/tracebox/silences") == []
        bad = server.post("/api/tracebox/silences", json.dumps({"matchers": []}))
        assert bad.status_code == 400 and "matchers" in bad.text
        bad = server.post(
            "/api/tracebox/silences", json.dumps({"matchers": ["service=x"], "duration": "soon"})
        )
        assert bad.status_code == 400 and "duration" in bad.text
    finally:
        server.stop()


def test_test_webhook_command(tmp_path, receiver):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tracebox.appliance.cli",
            "alerts",
            "test-webhook",
            "--config",
            config_file(tmp_path, receiver.url),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "ops: ok" in result.stdout
    [(path, headers, body)] = receiver.requests
    assert path == "/hook" and verify(headers, body)
    assert json.loads(body)["version"] == "4"


def test_test_webhook_without_receivers_says_what_to_do(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tracebox.appliance.cli", "alerts", "test-webhook"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0 and "--webhook URL" in result.stderr
