"""Overload: offered load far above what the writer can commit, for a bounded time.

The server runs with a small ingest queue (``--max-pending-spans 2000``) and many concurrent
posters of large batches. It must answer every request within a timeout (never hang), refuse
with 429/503 and ``Retry-After`` (never a 500), keep its memory under a stated bound, and
recover fully: after the load stops a normal post is accepted, and every span it acknowledged
is stored. OTLP/HTTP refusals are 429 with a ``google.rpc.Status`` body and ``Retry-After``.

Memory is the server's resident set, read from ``/proc/<pid>/status`` (``VmRSS`` sampled while
the load runs, and the peak ``VmHWM`` at the end). The bound, ``RSS_BOUND_MB``, is the idle
server (about 150 MiB) plus what admitted work may cost: ingest admits request bodies up to
``limits.MAX_INFLIGHT_BYTES`` (32 MiB) together, each decoding to many times its size in Python
objects while it waits for the writer, and refuses the rest before reading them. Without that
budget, 200 posters of OTLP batches drove the server past 1 GiB.
"""

from __future__ import annotations

import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import apsw
import orjson
import pytest
import requests
from google.rpc import status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import Tracebox, start_tracebox
from tests.spans import NOW_US

MAX_PENDING = 2000
MAX_BODY = 4 * 1024 * 1024
POSTERS = 64
BATCH = 1000
ANSWER_TIMEOUT_S = 30
#: Peak resident memory of the server under this overload, in MiB.
RSS_BOUND_MB = 500


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a process in MiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


def zipkin_batch(run: int, first: int) -> bytes:
    return orjson.dumps(
        [
            {
                "traceId": f"{run:08x}{(first + i) // 8:08x}",
                "id": f"{first + i + 1:016x}",
                "name": f"op{i % 17}",
                "kind": "CLIENT",
                "timestamp": NOW_US + first + i,
                "duration": 1000 + i,
                "localEndpoint": {"serviceName": f"svc{i % 7}", "ipv4": "10.0.0.1"},
                "remoteEndpoint": {"serviceName": "db"},
                "tags": {f"tag.{k}": f"value-{first + i}-{k}" for k in range(12)},
                "annotations": [{"timestamp": NOW_US + first + i + 1, "value": "ws"}],
            }
            for i in range(BATCH)
        ]
    )


def otlp_batch(run: int, first: int) -> bytes:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attr = resource_spans.resource.attributes.add()
    attr.key, attr.value.string_value = "service.name", "otlp-overload"
    scope = resource_spans.scope_spans.add()
    for i in range(BATCH):
        span = scope.spans.add()
        span.trace_id = run.to_bytes(8, "big") + ((first + i) // 8).to_bytes(8, "big")
        span.span_id = (first + i + 1).to_bytes(8, "big")
        span.name = f"op{i % 13}"
        span.kind = 3
        span.start_time_unix_nano = (NOW_US + first + i) * 1000
        span.end_time_unix_nano = span.start_time_unix_nano + 1_000_000
        for k in range(12):
            kv = span.attributes.add()
            kv.key, kv.value.string_value = f"attr.{k}", f"value-{first + i}-{k}"
    return request.SerializeToString()


class Flood:
    """``POSTERS`` threads posting big batches as fast as answers come back, for ``seconds``."""

    def __init__(self, server: Tracebox, path: str, content_type: str, make_body, seconds: float) -> None:
        self.url = server.url + path
        self.content_type = content_type
        self.make_body = make_body
        self.deadline = time.monotonic() + seconds
        self.run = random.randrange(1, 1 << 31)
        self.statuses: Counter = Counter()
        self.failures: list[str] = []
        self.acked: list[int] = []  # first span number of each acknowledged batch
        self.slowest = 0.0
        self.bodies: list[tuple[int, bytes, dict]] = []  # a few refusal answers, for their format
        self._lock = threading.Lock()
        self._next = 0

    def poster(self) -> None:
        session = requests.Session()
        while time.monotonic() < self.deadline:
            with self._lock:
                first = self._next
                self._next += BATCH
            body = self.make_body(self.run, first)
            started = time.monotonic()
            try:
                response = session.post(
                    self.url, data=body, headers={"Content-Type": self.content_type}, timeout=ANSWER_TIMEOUT_S
                )
            except requests.RequestException as exc:
                with self._lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                continue
            elapsed = time.monotonic() - started
            with self._lock:
                self.slowest = max(self.slowest, elapsed)
                self.statuses[response.status_code] += 1
                if response.status_code in (200, 202):
                    self.acked.append(first)
                elif response.status_code in (429, 503):
                    if not response.headers.get("Retry-After", "").isdigit():
                        self.failures.append(f"{response.status_code} without Retry-After")
                    if len(self.bodies) < 5:
                        self.bodies.append((response.status_code, response.content, dict(response.headers)))
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")

    def run_with_sampling(self, pid: int) -> float:
        """Run the posters; return the highest VmRSS seen while they ran, in MiB."""
        threads = [threading.Thread(target=self.poster, daemon=True) for _ in range(POSTERS)]
        for thread in threads:
            thread.start()
        peak = 0.0
        while any(t.is_alive() for t in threads):
            peak = max(peak, rss_mb(pid)[0])
            time.sleep(0.05)
            assert time.monotonic() < self.deadline + ANSWER_TIMEOUT_S + 10, "posters hung"
        return peak


def stored_ids(db: Path, service_like: str) -> set[str]:
    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        return {
            row[0] for row in conn.execute("SELECT span_id FROM spans WHERE service LIKE ?", (service_like,))
        }
    finally:
        conn.close()


@pytest.fixture
def small_queue(tmp_path):
    server = start_tracebox(
        tmp_path / "overload.db", "--max-pending-spans", str(MAX_PENDING), "--max-body-bytes", str(MAX_BODY)
    )
    yield server
    server.stop()


def _overload(server: Tracebox, path: str, content_type: str, make_body, seconds: float) -> Flood:
    assert server.proc is not None
    pid = server.proc.pid
    idle_rss, _ = rss_mb(pid)
    flood = Flood(server, path, content_type, make_body, seconds)
    peak_sampled = flood.run_with_sampling(pid)
    _, hwm = rss_mb(pid)
    refused = flood.statuses[429] + flood.statuses[503]
    print(
        f"\n{path} {content_type}: {sum(flood.statuses.values())} answers {dict(flood.statuses)}, slowest "
        f"{flood.slowest:.2f} s; RSS idle {idle_rss:.0f} MiB, peak sampled {peak_sampled:.0f} MiB, "
        f"VmHWM {hwm:.0f} MiB (bound {RSS_BOUND_MB})"
    )
    assert not flood.failures, flood.failures[:5]
    assert refused > 0, f"the load was not above capacity: {dict(flood.statuses)}"
    assert flood.acked, "nothing got through at all"
    assert flood.slowest < ANSWER_TIMEOUT_S
    assert hwm < RSS_BOUND_MB, f"peak RSS {hwm:.0f} MiB over the {RSS_BOUND_MB} MiB bound"
    # recovery: a normal post is accepted at once, and the server is healthy
    time.sleep(0.5)
    assert server.get("/health").status_code == 200
    one = orjson.dumps([{"traceId": "ab" * 8, "id": "cd" * 8, "localEndpoint": {"serviceName": "after"}}])
    assert server.post("/api/v2/spans", one).status_code == 202
    return flood


def _all_acked_stored(server: Tracebox, flood: Flood, service_like: str) -> None:
    assert server.stop(signal.SIGTERM) == 0
    ids = stored_ids(server.db, service_like)
    missing = [
        first for first in flood.acked if any(f"{first + i + 1:016x}" not in ids for i in range(BATCH))
    ]
    assert not missing, f"{len(missing)} acknowledged batches not (fully) stored"
    assert "cd" * 8 in stored_ids(server.db, "after")


def test_zipkin_overload_is_refused_politely_and_recovers(small_queue):
    flood = _overload(small_queue, "/api/v2/spans", "application/json", zipkin_batch, seconds=6)
    for status, body, _headers in flood.bodies:
        assert status == 429 and b"overloaded" in body, (status, body)
    _all_acked_stored(small_queue, flood, "svc%")


def test_otlp_http_overload_answers_429_with_rpc_status(small_queue):
    flood = _overload(small_queue, "/v1/traces", "application/x-protobuf", otlp_batch, seconds=5)
    for status, body, headers in flood.bodies:
        assert status == 429, status
        assert headers["Content-Type"].startswith("application/x-protobuf")
        rpc = status_pb2.Status.FromString(body)
        assert rpc.code == 8 and "overloaded" in rpc.message  # RESOURCE_EXHAUSTED
    # JSON clients get the Status as JSON
    _all_acked_stored(small_queue, flood, "otlp-overload")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_zipkin_overload_long(small_queue):
    flood = _overload(small_queue, "/api/v2/spans", "application/json", zipkin_batch, seconds=60)
    _all_acked_stored(small_queue, flood, "svc%")
