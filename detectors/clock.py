"""Event-time windows: which tumbling windows a watermark closes."""

from __future__ import annotations

from collections.abc import Iterable, Iterator


class WindowClock:
    """Windows of ``width`` µs, closed once the watermark passes their end plus ``delay``.

    After a gap in event time only ``max_quiet`` empty windows are closed one by one (enough for
    sliding evaluations to drain and open alerts to resolve); the rest of the gap is skipped.
    """

    __slots__ = ("delay", "max_quiet", "next", "width")

    def __init__(self, width: int, delay: int, max_quiet: int) -> None:
        self.width = width
        self.delay = delay
        self.max_quiet = max_quiet
        self.next: int | None = None  # index of the oldest window not yet closed

    def accepts(self, index: int) -> bool:
        if self.next is None:
            self.next = index
        return index >= self.next

    def due(self, watermark: int, open_windows: Iterable[int]) -> Iterator[int]:
        if self.next is None:
            return
        last = (watermark - self.delay) // self.width - 1  # newest window whose end has passed
        if last < self.next:
            return
        pending = sorted(i for i in open_windows if i <= last)
        quiet = 0
        while self.next <= last:
            index = self.next
            if pending and pending[0] == index:
                pending.pop(0)
                quiet = 0
            elif quiet >= self.max_quiet:
                index = pending[0] if pending else last
                quiet = 0
                if not pending:
                    self.next = last + 1
                    return
                pending.pop(0)
            else:
                quiet += 1
            self.next = index + 1
            yield index
