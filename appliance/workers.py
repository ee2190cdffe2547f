"""Worker processes beside the server (ingest decoding, the anomaly engine), gone when it goes.

Spawned, not forked: the server has threads (the writer, readers) whose locks a fork would copy.
A worker watches its parent and exits as soon as the parent is gone, even when the parent was
killed outright (SIGKILL, the OOM killer) and could not shut its pools down.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import apsw

#: How often a worker checks that the server is still there.
PARENT_CHECK_S = 0.5
#: Allocations between collections of the youngest generation (CPython's default: 700).
GC_YOUNGEST = 50_000


#: A worker reads spans in order, each page about once: a small page cache serves it.
READ_CACHE_MIB = 4

_read_connections: dict[str, apsw.Connection] = {}


def read_connection(path: str) -> apsw.Connection:
    """This worker process's read-only connection to the database at ``path``, opened on first use
    and shared by everything the process runs (the engine's steps, the rollup's analyses)."""
    conn = _read_connections.get(path)
    if conn is None:
        from tracebox.appliance.store import connect

        conn = _read_connections[path] = connect(path, readonly=True, cache_mib=READ_CACHE_MIB)
    return conn


def tune_gc() -> None:
    """Collect garbage less often in the server and its workers.

    Ingest makes many short-lived objects per span (dicts, tuples, strings) and keeps almost none;
    with CPython's default the collector walked them every 700 allocations and took about a tenth
    of the CPU under load (``tracebox bench``: 35-36k -> 39-41k Zipkin JSON spans/s). The objects
    of a request rarely form cycles, so memory stays bounded. Objects that live for the whole run
    (modules, settings) are frozen out of the collector's scans.
    """
    gc.freeze()
    gc.set_threshold(GC_YOUNGEST, 20, 100)


def worker_pool(
    processes: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple[Any, ...] = (),
    *,
    background: bool = False,
) -> ProcessPoolExecutor:
    """``background`` workers run only on CPU time that ingest leaves (see ``_run_in_background``)."""
    return ProcessPoolExecutor(
        processes,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(os.getpid(), background, initializer, initargs),
    )


def _run_in_background() -> None:
    """Linux's SCHED_IDLE class: a waking ingest thread takes the core at once, where a niced
    process still got its share. Under a paced 80 % load, p99 request latency went from 107-199 to
    77-117 ms (four interleaved pairs of runs). Elsewhere: the lowest nice."""
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)


def _start_worker(
    parent: int, background: bool, initializer: Callable[..., None] | None, initargs: tuple[Any, ...]
) -> None:
    if background:
        _run_in_background()
    tune_gc()
    threading.Thread(target=_exit_with, args=(parent,), name="tracebox-parent-watch", daemon=True).start()
    if initializer is not None:
        initializer(*initargs)


def _exit_with(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(PARENT_CHECK_S)
    os._exit(0)
