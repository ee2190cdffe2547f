"""Reading request bodies safely: size limits before and after decompression, gzip handling."""

from __future__ import annotations

import zlib

from aiohttp import web


class BodyError(Exception):
    """A body tracebox will not read; ``status`` is 400, 413 or 415 and the message names why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(request: web.Request, max_bytes: int) -> bytes:
    """The request body, decompressed, at most ``max_bytes`` either way."""
    declared = request.content_length
    if declared is not None and declared > max_bytes:
        raise BodyError(413, f"request body of {declared} bytes exceeds the {max_bytes}-byte limit")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > max_bytes:
            raise BodyError(413, f"request body exceeds the {max_bytes}-byte limit")
        chunks.append(chunk)
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
