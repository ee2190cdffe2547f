"""The ingest worker and the engine's process: same results as inline, replaced when killed,
gone when the server is."""

from __future__ import annotations

import os
import pickle
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import start_tracebox, wait_until
from tracebox.appliance import demo
from tracebox.appliance.prepare import Prepared, Preparer, PrepareSettings
from tracebox.appliance.store.rows import WireBatch


def _children(pid: int) -> dict[int, str]:
    """The server's child processes and their command lines."""
    out = {}
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in task.read_text().split():
            try:
                out[int(child)] = Path(f"/proc/{child}/cmdline").read_text().replace("\0", " ")
            except OSError:
                continue
    return out


def _workers(pid: int) -> list[int]:
    return [child for child, cmd in _children(pid).items() if "spawn_main" in cmd]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _demo_bodies() -> tuple[list[list[dict]], list[tuple[str, bytes, str]]]:
    traces = demo.generate_traces(12, seed=5)
    spans = [s for trace in traces for s in trace]
    bodies = []
    for fmt in ("zipkin-json", "zipkin-proto", "otlp-proto", "otlp-json"):
        wire = demo.FORMATS[fmt]
        bodies.append((wire.path, wire.encode(spans), wire.content_type))
    return traces, bodies


@pytest.mark.parametrize("processes", ["0", "2"])
def test_inline_and_worker_pipelines_store_the_same(tmp_path, processes):
    """Every wire format through worker processes gives what the inline pipeline gives."""
    traces, bodies = _demo_bodies()
    results = {}
    for mode in ("0", processes):
        server = start_tracebox(tmp_path / f"{mode}.db", "--ingest-processes", mode, "--no-engine")
        try:
            for path, body, content_type in bodies:
                response = server.post(path, body, content_type)
                assert response.status_code in (200, 202), response.text
                if mode != "0":
                    assert len(_workers(server.proc.pid)) == int(mode)
            results[mode] = [server.get_json(f"/api/v2/trace/{t[0]['traceId']}") for t in traces]
        finally:
            server.stop()
    assert results["0"] == results[processes]
    assert all(results["0"])


def test_a_prepared_request_crosses_processes_unchanged():
    """What a worker sends back (``Prepared.to_wire``) reads back equal, for every wire format: rows,
    posting lists, LLM rows with their costs, OTLP resources and scopes, and the names; the rows are
    read only when the writer asks (``WireBatch.read``), and the counts the server answers with at once."""
    preparer = Preparer(PrepareSettings(autocomplete_keys=frozenset({"http.method"})))
    spans = [s for trace in demo.generate_traces(12, seed=5) for s in trace]
    for fmt, wire in demo.FORMATS.items():
        prepared = preparer(fmt, wire.encode(spans))
        assert any(prepared.batch.llm) and prepared.batch.tags and prepared.batch.autocomplete
        received = Prepared.from_wire(pickle.loads(pickle.dumps(prepared.to_wire())))  # as the pool sends it
        assert isinstance(received.batch, WireBatch) and len(received.batch) == len(prepared.batch), fmt
        assert received.batch.read() == prepared.batch, fmt
        assert received.received == len(spans) and not received.rejected, fmt
    outcome = Prepared(prepared.batch, received=7, sampled_out=3, rejected=2, error_message="2 spans refused")
    received = Prepared.from_wire(pickle.loads(pickle.dumps(outcome.to_wire())))
    assert (received.received, received.sampled_out, received.rejected, received.error_message) == (
        7,
        3,
        2,
        "2 spans refused",
    )


def test_a_killed_ingest_worker_is_replaced(tmp_path):
    server = start_tracebox(tmp_path / "t.db", "--no-engine")
    try:
        traces, bodies = _demo_bodies()
        path, body, content_type = bodies[0]
        assert server.post(path, body, content_type).status_code == 202
        [worker] = _workers(server.proc.pid)
        os.kill(worker, signal.SIGKILL)
        wait_until(lambda: not _alive(worker), timeout=10)
        # the request that finds the worker dead is refused with a retry hint, never a 500...
        statuses = []
        for _ in range(20):
            response = server.post(path, body, content_type)
            statuses.append(response.status_code)
            if response.status_code == 202:
                break
            assert response.status_code == 503 and "Retry-After" in response.headers, response.text
            time.sleep(0.2)
        assert statuses[-1] == 202, statuses
        # ...and a new worker does the work
        assert len(_workers(server.proc.pid)) == 1 and worker not in _workers(server.proc.pid)
        trace = server.get_json(f"/api/v2/trace/{traces[0][0]['traceId']}")
        assert len(trace) == len(traces[0])
    finally:
        server.stop()


def test_helpers_exit_when_the_server_is_killed(tmp_path):
    server = start_tracebox(tmp_path / "t.db")
    pid = server.proc.pid
    wait_until(lambda: len(_workers(pid)) == 2, timeout=30)  # the ingest worker and the engine
    helpers = _workers(pid)
    server.stop(signal.SIGKILL)
    wait_until(lambda: not any(_alive(p) for p in helpers), timeout=10)


def test_only_the_engine_runs_on_cpu_time_ingest_leaves(tmp_path):
    """The engine's process is in the idle scheduling class; the server and the ingest worker are not."""
    server = start_tracebox(tmp_path / "t.db")
    try:
        pid = server.proc.pid
        wait_until(lambda: len(_workers(pid)) == 2, timeout=30)
        wait_until(lambda: os.SCHED_IDLE in {os.sched_getscheduler(p) for p in _workers(pid)}, timeout=30)
        classes = sorted(os.sched_getscheduler(p) for p in _workers(pid))
        assert classes == sorted([os.SCHED_OTHER, os.SCHED_IDLE])
        assert os.sched_getscheduler(pid) == os.SCHED_OTHER
    finally:
        server.stop()
