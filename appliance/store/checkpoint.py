"""Checkpointing the WAL in a thread of its own, so the writer's commits never pay for it.

SQLite's automatic checkpoint runs inside the COMMIT that crosses the threshold, in the writer
thread: measured at ~10% of the insert cost per span, and a latency spike for the requests of that
commit. Here a background connection runs PASSIVE checkpoints (which never block the writer or
readers) every ``interval`` seconds; the writer keeps a high automatic threshold only as a backstop
should this thread fall behind.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import apsw

log = logging.getLogger(__name__)

#: Pages in the WAL before the writer checkpoints by itself (the backstop): 64 MiB at 4 KiB pages.
WRITER_BACKSTOP_PAGES = 16_384


class Checkpointer:
    def __init__(self, open_connection: Callable[[], apsw.Connection], interval: float = 0.2) -> None:
        self._open = open_connection
        self._interval = interval
        self._stop = threading.Event()
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._run, name="tracebox-checkpoint", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            conn = self._open()
        except apsw.Error:
            log.exception("checkpoint connection failed; the writer checkpoints by itself")
            return
        try:
            while not self._stop.wait(self._interval):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except apsw.BusyError:
                    continue
                except apsw.Error:
                    log.exception("background checkpoint failed")
        finally:
            conn.close()

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)
