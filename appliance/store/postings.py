"""The tag index's posting lists: which traces carried a tag, and when, packed as the index stores them.

A posting is (ts, trace_low), two little-endian 64-bit integers, in no particular order (a search
sorts what it reads from a chunk anyway).
Ingest workers pack one list per tag hash and chunk-sized part of a request, so the writer inserts
one row per list (~4.6 times fewer rows than postings on demo traffic) and pickles bytes, not tuples.
"""

from __future__ import annotations

import struct
from itertools import chain

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
    lists: dict[int, dict[int, dict[int, Posting]]],
) -> tuple[list[tuple[int, int, bytes]], list[tuple[int, int, int]]]:
    """Posting lists given as ``{part: {h: {trace_low: (ts, trace_low)}}}`` as (part, h, list)
    rows, sorted by (part, h) so the writer inserts them in key order, and each part's (part, oldest
    ts, newest ts); part ``p`` holds a request's spans from index ``p << CHUNK_BITS`` on.

    A request has about one list per span, most of them short: each part's postings are packed by
    one ``struct`` call and then cut into its lists, which halves the cost of packing list by list.
    """
    packed = []
    ranges = []
    for part in sorted(lists):
        by_hash = lists[part]
        if not by_hash:  # its spans had no tags, annotations or remote service
            continue
        order = sorted(by_hash)
        groups = [by_hash[h] for h in order]
        flat = list(chain.from_iterable(chain.from_iterable(map(dict.values, groups))))
        blob = struct.pack(f"<{len(flat)}q", *flat)
        end = 0
        for h, traces in zip(order, groups, strict=True):
            start, end = end, end + _PAIR.size * len(traces)
            packed.append((part, h, blob[start:end]))
        stamps = flat[0::2]
        ranges.append((part, min(stamps), max(stamps)))
    return packed, ranges
