"""``tracebox bench``: ingest and query throughput of a real server on loopback.

Ingest: for each wire format (Zipkin JSON, Zipkin proto3, OTLP protobuf, OTLP JSON) with gzip off
and on, a fresh ``tracebox serve`` (subprocess, temp database) is driven by a load generator in a
separate process (its own GIL) posting pre-encoded demo traffic (AI-chat traces, ~19 spans each)
in 512-span requests over several connections, as fast as the server acknowledges them; then, on
the same server, at 80 % of the rate it reached. Reported per format: spans/s acknowledged and
spans/s durably stored (rows counted in the database afterwards over the same wall time), p50/p99
request latency flat out and at 80 %, the peak RSS (VmHWM) summed over the server's processes (the
server, its ingest workers and the engine's process), their CPU seconds during the flat-out phase, and bytes on disk per span (after the server's final checkpoint). Every figure is
the median of ``--runs`` runs.

Query (``--query``): ``--spans`` spans of demo traffic spread over the last 24 h are written into a
database through the store's own write path, a server is started on it, and the query API (and the
UI's main pages) are timed with repeated requests.

Every loop is bounded in count and time; everything listens and connects on 127.0.0.1 only.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip as gzip_lib
import hashlib
import http.client
import json
import math
import os
import pickle
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
BATCH = 512
START_TIMEOUT_S = 30.0
RUN_DEADLINE_S = 300.0
#: Spans per second of event time in the ingest traffic, by default what live traffic at the Zipkin
#: JSON target looks like. The anomaly engine closes a ten-second window per ten seconds of event
#: time, so a lower rate replays that much more history per second of wall time (the 150 spans/s
#: used before closed ~27 windows a second at 40k spans/s, where live traffic closes one in ten).
EVENT_RATE = 40_000.0

#: (label, demo format, gzip)
INGEST_CASES: tuple[tuple[str, str, bool], ...] = (
    ("zipkin-json", "zipkin-json", False),
    ("zipkin-json+gzip", "zipkin-json", True),
    ("zipkin-proto", "zipkin-proto", False),
    ("zipkin-proto+gzip", "zipkin-proto", True),
    ("otlp-proto", "otlp-proto", False),
    ("otlp-proto+gzip", "otlp-proto", True),
    ("otlp-json", "otlp-json", False),
    ("otlp-json+gzip", "otlp-json", True),
)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the server under test ------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    proc: subprocess.Popen
    db: Path
    port: int
    healthy_after_s: float

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid


def start_server(db: Path, extra: Sequence[str] = ()) -> Server:
    """``tracebox serve`` on a free loopback port; returns once /health answers 200."""
    for _attempt in range(3):
        port = free_port()
        cmd = [sys.executable, "-m", "tracebox.appliance.cli", "serve", "--host", HOST, "--port", str(port)]
        cmd += ["--otlp-http-port", "0", "--otlp-grpc-port", "0", "--db", str(db), *extra]
        log = open(db.with_suffix(".log"), "ab")  # noqa: SIM115 - owned by the child
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        log.close()
        deadline = started + START_TIMEOUT_S
        while time.perf_counter() < deadline and proc.poll() is None:
            if _health(port):
                return Server(proc, db, port, time.perf_counter() - started)
            time.sleep(0.01)
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
    tail = db.with_suffix(".log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"tracebox serve did not become healthy:\n{tail}")


def _health(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection(HOST, port, timeout=1.0)
        conn.request("GET", "/health")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def stop_server(server: Server, timeout: float = 60.0) -> int:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
    try:
        return server.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        return server.proc.wait(10)


def process_tree(pid: int) -> list[int]:
    """The server and its worker processes (ingest workers, the engine's process)."""
    tree, i = [pid], 0
    while i < len(tree):
        for task in Path(f"/proc/{tree[i]}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                tree.extend(int(child) for child in task.read_text().split())
        i += 1
    return tree


def cpu_seconds(pid: int) -> float:
    """CPU seconds used by the server's process tree so far."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    """The sum of the peak RSS (VmHWM) of the server's processes: an upper bound of their joint peak."""
    total = 0
    for member in process_tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    return total / 1024


def count_spans(db: Path) -> int:
    import apsw

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        conn.setbusytimeout(10_000)
        return conn.execute("SELECT count(*) FROM spans").fetchall()[0][0]
    finally:
        conn.close()


def disk_bytes(db: Path) -> int:
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(OSError):
            total += os.path.getsize(f"{db}{suffix}")
    return total


# --- traffic ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    path: str
    content_type: str
    gzip: bool
    bodies: list[bytes]
    spans: list[int]

    @property
    def total_spans(self) -> int:
        return sum(self.spans)


def encode_traffic(
    fmt: str, gzip: bool, spans: int, seed: int, cache_dir: Path, event_rate: float = EVENT_RATE
) -> Traffic:
    """Pre-encoded 512-span request bodies of about ``spans`` demo spans (cached on disk)."""
    from tracebox.appliance import demo

    wire = demo.FORMATS[fmt]
    key = hashlib.sha1(f"v3 {fmt} {gzip} {spans} {seed} {event_rate}".encode()).hexdigest()[:16]
    cached = cache_dir / f"{fmt}-{'gz' if gzip else 'raw'}-{spans}-{seed}-{key}.pickle"
    if cached.exists():
        bodies, counts = pickle.loads(cached.read_bytes())
    else:
        traces = _traces(spans, seed, event_rate)
        bodies, counts = [], []
        for batch in demo.iter_batches(traces, BATCH):
            body = wire.encode(batch)
            bodies.append(gzip_lib.compress(body, 6) if gzip else body)
            counts.append(len(batch))
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps((bodies, counts), protocol=pickle.HIGHEST_PROTOCOL))
        tmp.replace(cached)
    return Traffic(wire.path, wire.content_type, gzip, bodies, counts)


_TRACE_CACHE: dict[tuple[int, int, float], list] = {}


def _traces(spans: int, seed: int, event_rate: float = EVENT_RATE) -> list:
    """Demo traces with about ``spans`` spans (~19 per trace) in the order live traffic arrives in:
    their timestamps advance ``event_rate`` spans per second, and the last ones end now."""
    from tracebox.appliance import demo

    key = (spans, seed, event_rate)
    if key not in _TRACE_CACHE:
        traces: list = []
        total = 0
        rng = random.Random(seed)
        slice_s = 500 * 19 / event_rate  # event time that 500 traces cover
        slices = math.ceil(spans / (500 * 18)) + 1
        end_us = time.time_ns() // 1000 - int(slices * slice_s * 1_000_000)
        while total < spans:
            end_us = min(end_us + int(slice_s * 1_000_000), time.time_ns() // 1000)
            chunk = demo.generate_traces(500, seed=rng.randrange(2**31), end_us=end_us, spread_s=slice_s)
            for trace in chunk:
                traces.append(trace)
                total += len(trace)
                if total >= spans:
                    break
        _TRACE_CACHE.clear()
        _TRACE_CACHE[key] = traces
    return _TRACE_CACHE[key]


# --- the load generator (its own process) -----------------------------------------------------------


@dataclass
class LoadResult:
    acknowledged: int = 0
    failed: int = 0
    refused: int = 0  # 429/503 answers (retried)
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _load_process(argv: Sequence[str]) -> None:
    """``python -m tracebox.appliance.bench loadgen TRAFFIC URL CONNECTIONS RATE RESULT``."""
    traffic_file, url, connections, rate, result_file = argv
    path, content_type, gzip, bodies, counts = pickle.loads(Path(traffic_file).read_bytes())
    result = asyncio.run(
        _drive(
            url + path,
            content_type,
            gzip,
            bodies,
            counts,
            int(connections),
            float(rate) or None,
            RUN_DEADLINE_S,
        )
    )
    Path(result_file).write_bytes(pickle.dumps(vars(result)))  # plain data: __main__ differs


async def _drive(
    endpoint: str,
    content_type: str,
    gzip: bool,
    bodies: list[bytes],
    counts: list[int],
    connections: int,
    rate: float | None,
    deadline_s: float,
) -> LoadResult:
    import aiohttp

    headers = {"Content-Type": content_type}
    if gzip:
        headers["Content-Encoding"] = "gzip"
    result = LoadResult()
    order = iter(range(len(bodies)))
    started = time.perf_counter()
    stop_at = started + deadline_s
    paced = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal paced
        for index in order:
            if rate:
                paced += counts[index]
                await asyncio.sleep(max(0.0, started + paced / rate - time.perf_counter()))
            for _attempt in range(50):  # bounded retries of 429/503
                if time.perf_counter() > stop_at:
                    result.failed += counts[index]
                    return
                sent = time.perf_counter()
                try:
                    async with session.post(endpoint, data=bodies[index], headers=headers) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = 0
                    if len(result.errors) < 5:
                        result.errors.append(f"{type(exc).__name__}: {exc}")
                if 200 <= status < 300:
                    result.latencies_s.append(time.perf_counter() - sent)
                    result.acknowledged += counts[index]
                    break
                if status in (429, 503):
                    result.refused += 1
                    await asyncio.sleep(0.05)
                    continue
                if status and len(result.errors) < 5:
                    result.errors.append(f"HTTP {status}")
                result.failed += counts[index]
                break
            else:
                result.failed += counts[index]

    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(worker(session) for _ in range(connections)))
    result.elapsed_s = time.perf_counter() - started
    return result


def drive(
    url: str, traffic: Traffic, workdir: Path, connections: int, rate: float | None = None
) -> LoadResult:
    """Post every body of ``traffic`` from a separate process; returns its measurements."""
    traffic_file = workdir / "traffic.pickle"
    traffic_file.write_bytes(
        pickle.dumps((traffic.path, traffic.content_type, traffic.gzip, traffic.bodies, traffic.spans))
    )
    result_file = workdir / "result.pickle"
    result_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "tracebox.appliance.bench", "loadgen", str(traffic_file), url]
    cmd += [str(connections), str(rate or 0), str(result_file)]
    try:
        subprocess.run(cmd, check=True, timeout=RUN_DEADLINE_S + 60)
        return LoadResult(**pickle.loads(result_file.read_bytes()))
    finally:
        traffic_file.unlink(missing_ok=True)
        result_file.unlink(missing_ok=True)


def _pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


# --- ingest ------------------------------------------------------------------------------------------


@dataclass
class IngestRun:
    acked_per_s: float
    stored_per_s: float
    p50_ms: float
    p99_ms: float
    paced_rate: float
    paced_p50_ms: float
    paced_p99_ms: float
    peak_rss_mb: float
    cpu_s: float
    bytes_per_span: float
    healthy_s: float
    refused: int
    failed: int
    engine_lag_max: float  # spans, sampled every 0.25 s during the flat-out load
    engine_catch_up_s: float


def ingest_run(
    label: str, main: Traffic, paced: Traffic, workdir: Path, connections: int, serve_args: Sequence[str]
) -> IngestRun:
    db = workdir / f"{label}.db"
    for suffix in ("", "-wal", "-shm", ".log"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    server = start_server(db, serve_args)
    try:
        cpu_before = cpu_seconds(server.pid)
        with EngineLag(server.url) as lag:
            flat = drive(server.url, main, workdir, connections)
        catch_up = lag.catch_up_s()
        cpu = cpu_seconds(server.pid) - cpu_before
        stored = count_spans(db)
        target = 0.8 * stored / flat.elapsed_s
        slow = drive(server.url, paced, workdir, connections, rate=target)
        rss = peak_rss_mb(server.pid)
    finally:
        stop_server(server)
    total_stored = count_spans(db)
    for problem in flat.errors + slow.errors:
        say(f"    {label}: {problem}")
    return IngestRun(
        acked_per_s=flat.acknowledged / flat.elapsed_s,
        stored_per_s=stored / flat.elapsed_s,
        p50_ms=_pct(flat.latencies_s, 50) * 1000,
        p99_ms=_pct(flat.latencies_s, 99) * 1000,
        paced_rate=slow.acknowledged / slow.elapsed_s,
        paced_p50_ms=_pct(slow.latencies_s, 50) * 1000,
        paced_p99_ms=_pct(slow.latencies_s, 99) * 1000,
        peak_rss_mb=rss,
        cpu_s=cpu,
        bytes_per_span=disk_bytes(db) / max(1, total_stored),
        healthy_s=server.healthy_after_s,
        refused=flat.refused + slow.refused,
        failed=flat.failed + slow.failed,
        engine_lag_max=lag.max_lag,
        engine_catch_up_s=catch_up,
    )


class EngineLag:
    """Samples the anomaly engine's lag (committed spans not yet processed) while the load runs."""

    POLL_S = 0.25
    CATCH_UP_LIMIT_S = 120.0

    def __init__(self, url: str) -> None:
        self.url = url
        self.max_lag = float("nan")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _lag(self) -> int | None:
        try:
            with urllib.request.urlopen(self.url + "/api/tracebox/engine", timeout=5) as response:
                return json.loads(response.read())["lagSpans"]
        except (OSError, ValueError, KeyError):
            return None  # engine off (404) or busy

    def _poll(self) -> None:
        while not self._stop.wait(self.POLL_S):
            lag = self._lag()
            if lag is not None:
                self.max_lag = lag if self.max_lag != self.max_lag else max(self.max_lag, lag)

    def __enter__(self) -> EngineLag:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def catch_up_s(self) -> float:
        """Seconds from the end of the load until the engine has processed every committed span."""
        started = time.monotonic()
        while time.monotonic() - started < self.CATCH_UP_LIMIT_S:
            lag = self._lag()
            if lag is None:
                return float("nan")
            if lag == 0:
                return time.monotonic() - started
            time.sleep(self.POLL_S)
        return float("inf")


INGEST_COLUMNS = (
    ("acked/s", "acked_per_s", "{:,.0f}"),
    ("stored/s", "stored_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("p99 ms", "p99_ms", "{:.1f}"),
    ("80% rate", "paced_rate", "{:,.0f}"),
    ("p50@80%", "paced_p50_ms", "{:.1f}"),
    ("p99@80%", "paced_p99_ms", "{:.1f}"),
    ("RSS MB", "peak_rss_mb", "{:.0f}"),
    ("CPU s", "cpu_s", "{:.1f}"),
    ("B/span", "bytes_per_span", "{:.0f}"),
    ("eng lag", "engine_lag_max", "{:,.0f}"),
    ("catchup s", "engine_catch_up_s", "{:.1f}"),
    ("429s", "refused", "{:.0f}"),
    ("failed", "failed", "{:.0f}"),
)


def run_ingest(
    *,
    spans: int,
    runs: int,
    connections: int,
    formats: Sequence[str] | None,
    seed: int,
    workdir: Path,
    cache_dir: Path,
    serve_args: Sequence[str],
    event_rate: float = EVENT_RATE,
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    cases = [case for case in INGEST_CASES if not formats or case[0] in formats or case[1] in formats]
    medians: dict[str, dict[str, float]] = {}
    healthy: list[float] = []
    for label, fmt, gzip in cases:
        say(f"[bench] encoding {label}: {spans:,} + {spans // 2:,} spans (cached in {cache_dir})")
        main = encode_traffic(fmt, gzip, spans, seed, cache_dir, event_rate)
        paced = encode_traffic(fmt, gzip, spans // 2, seed + 1, cache_dir, event_rate)
        results: list[IngestRun] = []
        for run in range(1, runs + 1):
            try:
                result = ingest_run(label, main, paced, workdir, connections, serve_args)
            except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                say(f"[bench] {label} run {run}/{runs} failed: {str(exc)[-500:]}")
                continue
            results.append(result)
            healthy.append(result.healthy_s)
            say(
                f"[bench] {label} run {run}/{runs}: {result.stored_per_s:,.0f} spans/s stored, "
                f"p99 {result.p99_ms:.0f} ms, at 80% p99 {result.paced_p99_ms:.0f} ms, "
                f"RSS {result.peak_rss_mb:.0f} MB, {result.bytes_per_span:.0f} B/span"
            )
        if not results:
            continue
        medians[label] = {
            attr: statistics.median(getattr(r, attr) for r in results) for _, attr, _ in INGEST_COLUMNS
        }
    header = f"{'format':<18}" + "".join(f"{title:>10}" for title, _, _ in INGEST_COLUMNS)
    echo(f"\ningest: {spans:,} spans per run flat out, then {spans // 2:,} at 80% of that rate;")
    echo(
        f"{BATCH}-span requests over {connections} connections; {event_rate:,.0f} spans per second"
        f" of event time; median of {runs} runs"
    )
    echo(header)
    for label, row in medians.items():
        cells = "".join(f"{fmt.format(row[attr]):>10}" for _, attr, fmt in INGEST_COLUMNS)
        echo(f"{label:<18}{cells}")
    if healthy:
        echo(
            f"tracebox serve -> healthy: median {statistics.median(healthy) * 1000:.0f} ms, "
            f"max {max(healthy) * 1000:.0f} ms over {len(healthy)} starts"
        )
    return medians


# --- query -------------------------------------------------------------------------------------------


def load_database(db: Path, spans: int, seed: int, echo: Callable[[str], None] = say) -> int:
    """Write about ``spans`` demo spans (trace ids fresh, spread over the last 24 h) through the
    store's own write path (row building, compression dictionaries, group commit); returns the
    number written."""
    from tracebox.appliance.prepare import Preparer, PrepareSettings
    from tracebox.appliance.store import Store, blobs

    rng = random.Random(seed)
    now_us = time.time_ns() // 1000
    template = _traces(min(spans, 40_000), seed)  # ~2,100 distinct traces, replayed with new ids
    store = Store(db)
    store.prepare = Preparer(PrepareSettings()).rows
    trainer = blobs.Trainer(store)
    written = 0
    started = time.perf_counter()
    last_report = started

    def copies():
        nonlocal written
        copy = 0
        while written < spans:
            copy += 1
            for trace in template:
                shift = (
                    now_us - rng.randrange(86_000_000_000) - trace[-1]["timestamp"] - trace[-1]["duration"]
                )
                trace_id = f"{rng.getrandbits(128):032x}"
                for span in trace:
                    out = dict(span)
                    out["traceId"] = trace_id
                    out["timestamp"] = span["timestamp"] + shift
                    if "annotations" in span:
                        out["annotations"] = [
                            {"timestamp": a["timestamp"] + shift, "value": a["value"]}
                            for a in span["annotations"]
                        ]
                    yield out
                written += len(trace)
                if written >= spans:
                    return

    async def write_all() -> None:
        nonlocal last_report
        pending: set[asyncio.Task] = set()
        batch: list = []
        for span in copies():
            batch.append(span)
            if len(batch) < 5000:
                continue
            pending.add(asyncio.ensure_future(store.write_spans(batch)))
            batch = []
            await trainer.step()  # trains when due, as the server does
            if len(pending) >= 4:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            if time.perf_counter() - last_report > 5:
                last_report = time.perf_counter()
                rate = written / (last_report - started)
                echo(f"[bench] loading: {written:,}/{spans:,} spans ({rate:,.0f} spans/s)")
        if batch:
            pending.add(asyncio.ensure_future(store.write_spans(batch)))
        pending.add(asyncio.ensure_future(store.write_spans(big_trace(BIG_TRACE_SPANS, now_us - 60_000_000))))
        for task in pending:
            await task

    try:
        asyncio.run(write_all())
    finally:
        store.close()
    echo(f"[bench] loaded {written:,} spans in {time.perf_counter() - started:.0f} s")
    return written


BIG_TRACE_ID = "b16b16b16b16b16b16b16b16b16b16b1"
BIG_TRACE_SPANS = 5_000


def big_trace(spans: int, start_us: int) -> list[dict]:
    """One trace of ``spans`` spans: a root fanning out ten wide per level over six services, each
    child inside its parent's time, for the trace page's worst case."""
    services = ("api-gateway", "chat", "context", "llm-router", "vector-store", "billing")
    out = []
    for i in range(spans):
        depth = 0
        j = i
        while j:
            j = (j - 1) // 10
            depth += 1
        span = {
            "traceId": BIG_TRACE_ID,
            "id": f"{i + 1:016x}",
            "name": f"step {i % 37}",
            "kind": "SERVER" if i % 3 == 0 else "CLIENT",
            "timestamp": start_us + i * 50,
            "duration": max(1, 10_000_000 // (depth + 1) - (i % 10) * 100),
            "localEndpoint": {"serviceName": services[i % len(services)]},
            "tags": {"index": str(i)},
        }
        if i:
            span["parentId"] = f"{(i - 1) // 10 + 1:016x}"
        out.append(span)
    return out


def _query_plan(db: Path, now_ms: int) -> list[tuple[str, list[str]]]:
    """(label, request paths) to time; parameters vary over the stored data."""
    import apsw

    conn = apsw.Connection(str(db), flags=apsw.SQLITE_OPEN_READONLY)
    try:
        max_id = conn.execute("SELECT max(id) FROM spans").fetchall()[0][0] or 1
        rng = random.Random(7)
        ids = []
        for _ in range(200):
            row = conn.execute(
                "SELECT trace_id FROM spans WHERE id = ?", (rng.randrange(1, max_id + 1),)
            ).fetchall()
            if row:
                ids.append(row[0][0])
        has_big_trace = bool(
            conn.execute("SELECT 1 FROM spans WHERE trace_id = ?", (BIG_TRACE_ID,)).fetchall()
        )
    finally:
        conn.close()
    window = f"endTs={now_ms}&lookback=86400000&limit=10"
    plan: list[tuple[str, list[str]]] = [
        ("/trace/{id}", [f"/api/v2/trace/{trace_id}" for trace_id in ids[:50]]),
        ("/services", ["/api/v2/services"]),
        ("/spans?serviceName", ["/api/v2/spans?serviceName=chat", "/api/v2/spans?serviceName=llm-router"]),
        (
            "/traces service",
            [
                f"/api/v2/traces?serviceName={s}&{window}"
                for s in ("api-gateway", "chat", "llm-router", "auth")
            ],
        ),
        (
            "/traces service+spanName",
            [
                f"/api/v2/traces?serviceName=chat&spanName={urllib.parse.quote('select messages')}&{window}",
                f"/api/v2/traces?serviceName=llm-router&spanName={urllib.parse.quote('chat gpt-4o')}&{window}",
            ],
        ),
        (
            "/traces service+annotationQuery",
            [
                f"/api/v2/traces?serviceName=llm-router&annotationQuery={urllib.parse.quote(q)}&{window}"
                for q in ("gen_ai.request.model=gpt-4o", "gen_ai.request.model=claude-sonnet-4", "error")
            ],
        ),
        (
            "/traces service+minDuration",
            [
                f"/api/v2/traces?serviceName={s}&minDuration={d}&{window}"
                for s, d in (("api-gateway", 2_000_000), ("chat", 1_000_000), ("api-gateway", 8_000_000))
            ],
        ),
        (
            "/traces remoteServiceName",
            [
                f"/api/v2/traces?{q}&{window}"
                for q in (
                    "remoteServiceName=postgres",
                    "serviceName=chat&remoteServiceName=kafka",
                    "remoteServiceName=s3",
                )
            ],
        ),
        (
            "/traces annotationQuery only",
            [f"/api/v2/traces?annotationQuery={urllib.parse.quote('http.status_code=500')}&{window}"],
        ),
        ("/dependencies 24h", [f"/api/v2/dependencies?endTs={now_ms}&lookback=86400000"]),
        ("UI /", ["/"]),
        ("UI /?serviceName", ["/?serviceName=api-gateway"]),
        ("UI /traces/{id}", [f"/traces/{trace_id}" for trace_id in ids[50:80]]),
    ]
    if has_big_trace:
        plan += [
            (f"/trace/{{id}} {BIG_TRACE_SPANS:,} spans", [f"/api/v2/trace/{BIG_TRACE_ID}"]),
            (f"UI /traces/{{id}} {BIG_TRACE_SPANS:,} spans", [f"/traces/{BIG_TRACE_ID}"]),
        ]
    return plan


def _wait_for_dependency_links(port: int, timeout_s: float = 900.0) -> None:
    """Let the server link the loaded minutes (its steady state) before /dependencies is timed."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        conn = http.client.HTTPConnection(HOST, port, timeout=60)
        try:
            conn.request("GET", "/metrics")
            metrics = json.loads(conn.getresponse().read())
        finally:
            conn.close()
        backlog = metrics.get("tracebox_dependency_dirty_buckets", 0)
        if backlog == 0:
            say(f"[bench] dependency links current after {time.perf_counter() - started:.0f} s")
            return
        time.sleep(1)
    say("[bench] dependency links still behind; /dependencies links the rest live")


def run_query(
    *,
    spans: int,
    repeat: int,
    seed: int,
    workdir: Path,
    db: Path | None,
    serve_args: Sequence[str],
    echo: Callable[[str], None] = print,
) -> dict[str, dict[str, float]]:
    if db is None or not db.exists():
        db = db or workdir / f"query-{spans}.db"
        say(f"[bench] loading {spans:,} spans into {db}")
        load_database(db, spans, seed)
    stored = count_spans(db)
    server = start_server(db, serve_args)
    say(f"[bench] server on {stored:,} spans healthy after {server.healthy_after_s * 1000:.0f} ms")
    results: dict[str, dict[str, float]] = {}
    try:
        _wait_for_dependency_links(server.port)
        now_ms = int(time.time() * 1000)
        conn = http.client.HTTPConnection(HOST, server.port, timeout=60)
        for label, paths in _query_plan(db, now_ms):
            times: list[float] = []
            sizes: list[int] = []
            statuses: set[int] = set()
            budget = time.perf_counter() + 120  # seconds per query kind, at most
            for index in range(repeat):
                path = paths[index % len(paths)]
                sent = time.perf_counter()
                conn.request("GET", path)
                response = conn.getresponse()
                body = response.read()
                times.append(time.perf_counter() - sent)
                statuses.add(response.status)
                sizes.append(len(body))
                if time.perf_counter() > budget:
                    break
            results[label] = {
                "p50_ms": _pct(times, 50) * 1000,
                "p99_ms": _pct(times, 99) * 1000,
                "max_ms": max(times) * 1000,
                "n": len(times),
                "bytes": statistics.median(sizes),
            }
            say(f"[bench] {label}: p50 {results[label]['p50_ms']:.1f} ms ({sorted(statuses)})")
        conn.close()
        rss = peak_rss_mb(server.pid)
    finally:
        stop_server(server)
    echo(f"\nquery: {stored:,} spans over 24 h ({disk_bytes(db) / max(1, stored):.0f} B/span on disk)")
    echo(f"server healthy after {server.healthy_after_s * 1000:.0f} ms; peak RSS {rss:.0f} MB")
    echo(f"{'request':<34}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'n':>5}{'bytes':>10}")
    for label, row in results.items():
        echo(
            f"{label:<34}{row['p50_ms']:>9.1f}{row['p99_ms']:>9.1f}{row['max_ms']:>9.1f}"
            f"{row['n']:>5}{row['bytes']:>10,.0f}"
        )
    return results


def main(
    *,
    query: bool = False,
    ingest: bool = True,
    spans: int | None = None,
    runs: int = 3,
    connections: int = 4,
    formats: Sequence[str] | None = None,
    repeat: int = 30,
    seed: int = 1,
    db: str | None = None,
    keep: bool = False,
    serve_args: Sequence[str] = (),
    event_rate: float = EVENT_RATE,
) -> None:
    cache_dir = Path(tempfile.gettempdir()) / "tracebox-bench-cache"
    workdir = Path(tempfile.mkdtemp(prefix="tracebox-bench-"))
    say(f"[bench] working in {workdir}")
    try:
        if ingest:
            run_ingest(
                spans=spans or 100_000,
                runs=runs,
                connections=connections,
                formats=formats,
                seed=seed,
                workdir=workdir,
                cache_dir=cache_dir,
                serve_args=serve_args,
                event_rate=event_rate,
            )
        if query:
            run_query(
                spans=spans or 1_000_000,
                repeat=repeat,
                seed=seed,
                workdir=workdir,
                db=Path(db) if db else None,
                serve_args=serve_args,
            )
    finally:
        if not keep:
            for path in workdir.iterdir():
                path.unlink(missing_ok=True)
            workdir.rmdir()


if __name__ == "__main__" and len(sys.argv) == 7 and sys.argv[1] == "loadgen":
    _load_process(sys.argv[2:])
