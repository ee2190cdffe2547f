"""Traces waiting to settle: seen recently, analysed once no span of theirs has come for a while.

At live rates tens of thousands of traces wait at once, and the rollup asks after every batch of
rows which have settled, where its restart point is (the first row of any trace still waiting) and
which start time still holds a window open. Scanning every waiting trace for each answer blocked the
server's event loop 4-37 ms per batch. Here each answer costs what it returns: traces are kept in
the order their last span came, so the settled ones are at the front, and two heaps with lazy
deletion give the smallest first row id and the earliest start.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class Settling:
    def __init__(self) -> None:
        #: trace low -> [first row id, last arrival (monotonic s), earliest ts, spans], oldest arrival first
        self.traces: dict[int, list] = {}
        self._first_ids: list[tuple[int, int]] = []  # (first row id, low); stale once the trace is gone
        self._starts: list[tuple[int, int]] = []  # (earliest ts, low); stale once it changes

    def __len__(self) -> int:
        return len(self.traces)

    def see(self, groups: Iterable[tuple[int, int, int, int, int | None, int | None]], now: float) -> int:
        """File the traces of rows committed since the last call, arrived ``now``: one group per
        trace, in the order of their last rows, as (trace low, first row id, last row id, spans,
        earliest ts, newest ts); return the newest ts (0: none)."""
        traces = self.traces
        newest = 0
        for low, first_id, _, spans, earliest, latest in groups:
            if latest and latest > newest:
                newest = latest
            entry = traces.pop(low, None)
            if entry is None:
                entry = [first_id, now, earliest or 0, spans]
                heapq.heappush(self._first_ids, (first_id, low))
                if earliest:
                    heapq.heappush(self._starts, (earliest, low))
            else:
                entry[1] = now
                entry[3] += spans
                if earliest and (not entry[2] or earliest < entry[2]):
                    entry[2] = earliest
                    heapq.heappush(self._starts, (earliest, low))
            traces[low] = entry  # to the back: the newest arrival
        return newest

    def settled(self, now: float, settle_s: float, max_waiting: int) -> list[int]:
        """Traces quiet for ``settle_s``, and the oldest beyond ``max_waiting`` still waiting."""
        ready: list[int] = []
        waiting = len(self.traces)
        for low, entry in self.traces.items():
            if now - entry[1] < settle_s and waiting - len(ready) <= max_waiting:
                break
            ready.append(low)
        return ready

    def spans(self, lows: Iterable[int]) -> int:
        return sum(self.traces[low][3] for low in lows)

    def remove(self, lows: Iterable[int]) -> None:
        for low in lows:
            del self.traces[low]

    def first_row_id(self) -> int | None:
        """The smallest first row id of a waiting trace."""
        heap = self._first_ids
        while heap and ((entry := self.traces.get(heap[0][1])) is None or entry[0] != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None

    def earliest_start(self) -> int | None:
        """The earliest timestamp of a waiting trace."""
        heap = self._starts
        while heap and ((entry := self.traces.get(heap[0][1])) is None or entry[2] != heap[0][0]):
            heapq.heappop(heap)
        return heap[0][0] if heap else None
