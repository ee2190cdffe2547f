"""Time slots: how the time-ordered indexes on spans are keyed, and how queries range over them.

Spans arrive seconds after they start (exporters send them when they end, in batches). Keyed by
timestamp, each insert into a time-ordered index landed somewhere in the last few seconds'
entries, and each commit rewrote thousands of scattered index pages (at 40k Zipkin JSON spans a
second: 6 KB of WAL per span, and the writer's cost per span 10.5 -> 24 us). Keyed by a ten-second
slot and then by arrival (the span's row id), an insert goes to the end of its slot's run, a page
that is already hot. A query ranges over slots and sorts by timestamp within each slot, which
SQLite does one slot at a time as it reads them.

The slot is an expression, not a column: SQLite reads an index on an expression as covering when
the query spells the same expression, and it cannot for a generated column.
"""

from __future__ import annotations

SLOT_US = 10_000_000
#: The indexed expression; queries must use this exact text for SQLite to match the index.
SLOT = f"(ts / {SLOT_US})"

#: Rows in the order queries want them, newest first, from any slotted index.
NEWEST_FIRST = f"ORDER BY {SLOT} DESC, ts DESC"
#: The smallest timestamp stored, read from the first slot instead of a scan of the table.
OLDEST_TS = f"SELECT min(ts) FROM spans WHERE {SLOT} = (SELECT min({SLOT}) FROM spans)"


def time_window(lo_us: int, hi_us: int) -> tuple[str, tuple[int, int, int, int]]:
    """SQL condition (and arguments) for spans with ``lo_us <= ts <= hi_us``, in a form the slotted
    indexes serve."""
    return f"{SLOT} BETWEEN ? AND ? AND ts BETWEEN ? AND ?", (
        lo_us // SLOT_US,
        hi_us // SLOT_US,
        lo_us,
        hi_us,
    )
