"""The tag index's posting lists: which traces carried a tag, and when, packed as the index stores them.

A posting is (ts, trace_low), two little-endian 64-bit integers, in no particular order (a search
sorts what it reads from a chunk anyway).
Ingest workers pack one list per tag hash and chunk-sized part of a request, so the writer inserts
one row per list (~4.6 times fewer rows than postings on demo traffic) and pickles bytes, not tuples.
"""

from __future__ import annotations

import struct

#: A chunk of the tag index holds the postings of ``1 << CHUNK_BITS`` span ids (see ``tag_index``).
CHUNK_BITS = 13

Posting = tuple[int, int]  # (ts, trace_low)
_PAIR = struct.Struct("<qq")


def encode(postings: list[Posting]) -> bytes:
    flat = [value for posting in postings for value in posting]
    return struct.pack(f"<{len(flat)}q", *flat)


def decode(blob: bytes) -> list[Posting]:
    flat = struct.unpack(f"<{len(blob) // 8}q", blob)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def pack(
    lists: dict[tuple[int, int], dict[int, int]],
) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, int]]]:
    """Posting lists given as ``{(part, h): {trace_low: ts}}`` as (part, h, list) rows, sorted by
    (part, h) so the writer inserts them in key order, and each part's (part, oldest ts, newest
    ts); part ``p`` holds a request's spans from index ``p << CHUNK_BITS`` on."""
    packed = []
    ranges: dict[int, list[int]] = {}
    for (part, h), traces in sorted(lists.items()):
        if len(traces) == 1:  # half the lists on demo traffic
            ((low, ts),) = traces.items()
            packed.append((part, h, _PAIR.pack(ts, low)))
            lo = hi = ts
        else:
            flat = [0] * (2 * len(traces))
            flat[0::2] = traces.values()
            flat[1::2] = traces.keys()
            packed.append((part, h, struct.pack(f"<{len(flat)}q", *flat)))
            lo, hi = min(traces.values()), max(traces.values())
        bounds = ranges.get(part)
        if bounds is None:
            ranges[part] = [lo, hi]
        else:
            bounds[0] = min(bounds[0], lo)
            bounds[1] = max(bounds[1], hi)
    return packed, [(part, lo, hi) for part, (lo, hi) in ranges.items()]
