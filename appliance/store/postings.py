"""The tag index's posting lists: which traces carried a tag, and when, packed as the index stores them.

A posting is (ts, trace_low), two little-endian 64-bit integers, in no particular order (a search
sorts what it reads from a chunk anyway).
Ingest workers pack one list per tag hash and chunk-sized part of a request, so the writer inserts
one row per list (~5 times fewer rows than postings on demo traffic) and receives bytes, not tuples.
"""

from __future__ import annotations

import struct

#: A chunk of the tag index holds the postings of ``1 << CHUNK_BITS`` span ids (see ``tag_index``).
CHUNK_BITS = 13

Posting = tuple[int, int]  # (ts, trace_low)
_PAIR = struct.Struct("<qq")
#: One posting, packed: ``one(ts, trace_low)``. A list is its postings joined, so a posting's two
#: integers are converted once per span, whatever the number of lists the span is in.
one = _PAIR.pack


def encode(postings: list[Posting]) -> bytes:
    flat = [value for posting in postings for value in posting]
    return struct.pack(f"<{len(flat)}q", *flat)


def decode(blob: bytes) -> list[Posting]:
    flat = struct.unpack(f"<{len(blob) // 8}q", blob)
    return list(zip(flat[0::2], flat[1::2], strict=True))


def pack(lists: dict[int, dict[int, dict[int, bytes]]]) -> list[tuple[int, int, bytes]]:
    """Posting lists given as ``{part: {h: {trace_low: packed posting}}}`` (postings made by
    ``one``) as (part, h, list) rows, sorted by (part, h) so the writer inserts them in key order;
    part ``p`` holds a request's spans from index ``p << CHUNK_BITS`` on."""
    return [
        (part, h, b"".join(lists[part][h].values())) for part in sorted(lists) for h in sorted(lists[part])
    ]
