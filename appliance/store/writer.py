"""The single writer thread: group commit of everything that writes to the database.

Jobs queue up from any thread; each turn the writer takes all queued jobs (up to a cap), runs
each inside its own savepoint of one transaction and commits once. A job's completion callback
fires only after that commit, which is what lets the collector acknowledge a request only once its
spans are in the WAL. apsw releases the GIL inside SQLite, so decoding on the event loop and
writing here really run side by side on two cores.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import apsw

from tracebox.appliance.errors import Overloaded, StoreUnavailable

log = logging.getLogger(__name__)

Job = Callable[[apsw.Connection], Any]
Done = Callable[[Any, BaseException | None], None]

#: Spans committed in one transaction at most; beyond this a commit is split.
MAX_SPANS_PER_COMMIT = 50_000
#: Errors after which the database takes no writes until the cause goes away.
_FATAL = (apsw.FullError, apsw.IOError, apsw.CorruptError, apsw.ReadOnlyError)
#: After a failed commit (disk full...), span writes are refused this long before the next try.
RETRY_UNAVAILABLE_S = 5.0


@dataclass(slots=True)
class _Queued:
    job: Job
    done: Done
    weight: int  # spans, for backpressure


@dataclass(slots=True)
class WriterStats:
    commits: int = 0
    jobs: int = 0
    spans: int = 0
    failed_commits: int = 0
    last_commit_seconds: float = 0.0
    commit_seconds_total: float = 0.0


def _fatal_cause(exc: BaseException | None) -> BaseException | None:
    """The full-disk or I/O error somewhere down an exception's chain, if any."""
    while exc is not None and not isinstance(exc, _FATAL):
        exc = exc.__context__
    return exc


class Writer:
    def __init__(self, conn: apsw.Connection, *, max_pending_spans: int = 200_000) -> None:
        self._conn = conn
        self._max_pending = max_pending_spans
        self._queue: deque[_Queued] = deque()
        self._pending_spans = 0
        self._cond = threading.Condition()
        self._stopping = False
        self.stats = WriterStats()
        self.unavailable: str | None = None  # set while the disk is full or the database unusable
        self._failed_at = 0.0
        self.on_failure: list[Callable[[], None]] = []  # run when work is rolled back
        self.retry_unavailable_s = RETRY_UNAVAILABLE_S
        self._thread = threading.Thread(target=self._run, name="tracebox-writer", daemon=True)
        self._thread.start()

    @property
    def pending_spans(self) -> int:
        return self._pending_spans

    @property
    def queued_jobs(self) -> int:
        return len(self._queue)

    def submit(self, job: Job, done: Done, weight: int = 0) -> None:
        """Queue a job; refuse span-bearing work when the queue is full, so memory stays bounded."""
        with self._cond:
            if self._stopping:
                raise StoreUnavailable("tracebox is shutting down", retry_after=2.0)
            if weight:
                if self.unavailable and time.monotonic() - self._failed_at < self.retry_unavailable_s:
                    raise StoreUnavailable(self.unavailable, retry_after=self.retry_unavailable_s)
                if self._pending_spans and self._pending_spans + weight > self._max_pending:
                    backlog = self._pending_spans / max(self._rate(), 1.0)
                    raise Overloaded(retry_after=max(1.0, round(backlog, 1)))
            self._pending_spans += weight
            self._queue.append(_Queued(job, done, weight))
            self._cond.notify()

    def _rate(self) -> float:
        """Spans per second the writer has been committing, to size Retry-After."""
        s = self.stats
        return s.spans / s.commit_seconds_total if s.commit_seconds_total else 50_000.0

    def close(self, timeout: float = 30.0) -> None:
        """Finish everything queued, then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout)

    def _take(self) -> list[_Queued] | None:
        with self._cond:
            while not self._queue:
                if self._stopping:
                    return None
                self._cond.wait()
            taken: list[_Queued] = []
            spans = 0
            while self._queue and (not taken or spans + self._queue[0].weight <= MAX_SPANS_PER_COMMIT):
                item = self._queue.popleft()
                spans += item.weight
                taken.append(item)
            return taken

    def _run(self) -> None:
        while (taken := self._take()) is not None:
            self._commit(taken)

    def _commit(self, taken: list[_Queued]) -> None:
        started = time.perf_counter()
        results: list[tuple[Any, BaseException | None]] = []
        error: BaseException | None = None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for item in taken:
                try:
                    with self._conn:  # a savepoint: one failing job does not undo the others
                        results.append((item.job(self._conn), None))
                except Exception as exc:
                    # SQLite rolls the whole transaction back on a full disk or an I/O error, and the
                    # savepoint's own rollback then fails: what matters is the first error.
                    cause = _fatal_cause(exc) or exc
                    if isinstance(cause, _FATAL) or self._conn.getautocommit():
                        raise cause from None
                    log.exception("write job failed")
                    self._rolled_back()
                    results.append((None, exc))
            self._conn.execute("COMMIT")
        except _FATAL as exc:
            error = self._fail(exc)
        except Exception as exc:  # unexpected: keep the writer alive, fail this group
            log.exception("commit failed")
            error = self._fail(exc)
        else:
            self.unavailable = None
        elapsed = time.perf_counter() - started
        weight = sum(item.weight for item in taken)
        with self._cond:
            self._pending_spans -= weight
        stats = self.stats
        if error is None:
            stats.commits += 1
            stats.jobs += len(taken)
            stats.spans += weight
            stats.last_commit_seconds = elapsed
            stats.commit_seconds_total += elapsed
            for item, (result, exc) in zip(taken, results, strict=True):
                item.done(result, exc)
        else:
            stats.failed_commits += 1
            for item in taken:
                item.done(None, error)

    def _rolled_back(self) -> None:
        for hook in self.on_failure:
            hook()

    def _fail(self, exc: BaseException) -> StoreUnavailable:
        self._rolled_back()
        if not self._conn.getautocommit():
            try:
                self._conn.execute("ROLLBACK")
            except apsw.Error:
                log.exception("rollback failed")
        if isinstance(exc, apsw.FullError):
            message = "the disk holding the database is full; free space or lower retention"
        else:
            message = f"the database cannot take writes: {exc}"
        self.unavailable = message
        self._failed_at = time.monotonic()
        log.error("%s", message)
        return StoreUnavailable(message)
