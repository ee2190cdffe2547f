"""The critical path of a trace, with each span's share of it (one implementation for the
analyser and the waterfall).

Jaeger's algorithm: from each top-level span's end, walk back through the child that finished last
before the cursor, then the one that finished last before that child started, and so on. A span's
share is the time on the path it spends itself, between the children the walk passed through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class PathNode(Protocol):
    """What the walk reads: a start (µs), a duration (µs, None when unknown) and child indices."""

    start: int
    duration: int | None
    children: list[int]
    parent: int | None


def critical_path(nodes: Sequence[PathNode]) -> dict[int, int]:
    """Index -> µs of the critical path spent in that span itself, for every span on the path
    (zero for a span whose whole time is covered by its children on the path)."""
    on_path: dict[int, int] = {}
    stack = [(i, n.start + n.duration) for i, n in enumerate(nodes) if n.parent is None and n.duration]
    while stack:
        index, cap = stack.pop()
        node = nodes[index]
        lo = node.start
        cursor = min(node.start + (node.duration or 0), cap)
        own = 0
        kids = sorted(
            (k for k in node.children if nodes[k].duration),
            key=lambda k: nodes[k].start + nodes[k].duration,  # type: ignore[operator]
            reverse=True,
        )
        for k in kids:
            kid = nodes[k]
            if kid.start >= cursor:
                continue  # started after the cursor: work the parent did not wait for
            kid_end = min(kid.start + kid.duration, cursor)  # type: ignore[operator]
            own += max(0, cursor - max(kid_end, lo))
            stack.append((k, cursor))
            cursor = kid.start
        own += max(0, cursor - lo)
        on_path[index] = on_path.get(index, 0) + own
    return on_path
