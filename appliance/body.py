"""Reading request bodies safely: size limits before and after decompression, gzip handling."""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Iterator

from aiohttp import web

from tracebox.appliance import limits
from tracebox.appliance.errors import Overloaded


class BodyError(Exception):
    """A body tracebox will not read; ``status`` is 400, 408, 413 or 415 and the message names why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InflightBytes:
    """Bytes of ingest bodies admitted and not yet answered; past ``limit`` requests are refused
    before their body is read, so memory stays bounded however many clients post at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    @contextlib.contextmanager
    def admit(self, declared: int | None, max_bytes: int) -> Iterator[Admitted]:
        held = Admitted(self, min(declared if declared is not None else max_bytes, max_bytes))
        if self.used and self.used + held.bytes > self.limit:
            raise Overloaded(
                retry_after=1.0,
                message="tracebox is overloaded (too many request bodies in flight), retry later",
            )
        self.used += held.bytes
        try:
            yield held
        finally:
            self.used -= held.bytes


class Admitted:
    def __init__(self, owner: InflightBytes, size: int) -> None:
        self._owner = owner
        self.bytes = size

    def grow_to(self, size: int) -> None:
        """Account for the body as decompressed (never refused here: ``max_bytes`` bounds it)."""
        if size > self.bytes:
            self._owner.used += size - self.bytes
            self.bytes = size


#: One budget per process (the event loop is single-threaded, so no lock is needed).
INFLIGHT = InflightBytes(limits.MAX_INFLIGHT_BYTES)


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, decompressed, at most ``max_bytes`` either way.

    The whole body must arrive within ``limits.BODY_READ_TIMEOUT_S``: a client that stalls
    mid-body (slow or half-open) gets a 408 instead of holding a connection and its buffers.
    """
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyError(413, f"request body of {declared} bytes exceeds the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(limits.BODY_READ_TIMEOUT_S):
            async for chunk in request.content.iter_chunked(1 << 16):
                size += len(chunk)
                if size > max_bytes:
                    raise BodyError(413, f"request body exceeds the {max_bytes}-byte limit")
                chunks.append(chunk)
    except TimeoutError:
        raise BodyError(
            408, f"request body not received within {limits.BODY_READ_TIMEOUT_S:g} s ({size} bytes arrived)"
        ) from None
    body = b"".join(chunks)
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip", "deflate"):
        return gunzip(body, max_bytes, encoding)
    raise BodyError(415, f"unsupported Content-Encoding {encoding!r}: send gzip or no encoding")


def gunzip(body: bytes, max_bytes: int, encoding: str = "gzip") -> bytes:
    """Decompress with a hard output cap, so a gzip bomb costs at most ``max_bytes`` of memory."""
    wbits = zlib.MAX_WBITS | 16 if encoding != "deflate" else zlib.MAX_WBITS | 32
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BodyError(400, f"Cannot gunzip spans: {exc}") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise BodyError(413, f"request body exceeds the {max_bytes}-byte limit after decompression")
    if not inflater.eof:
        raise BodyError(400, "Cannot gunzip spans: truncated gzip stream")
    return out


def media_type(request: web.Request) -> str:
    """The Content-Type without parameters, lower-cased; empty when absent."""
    return request.content_type.lower() if request.headers.get("Content-Type") else ""
