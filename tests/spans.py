"""Building Zipkin v2 spans for tests, with ids unique per test so tests can share a server."""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

import apsw

from tracebox.appliance.store.postings import decode

_counter = itertools.count(1)
_RUN = os.getpid() & 0xFFFF

#: "Now" for the tests, a whole second a little in the past, in epoch microseconds.
NOW_US = (int(time.time()) - 60) * 1_000_000


def new_trace_id(bits: int = 64) -> str:
    """A fresh random-enough trace id; never with a zero high half when 128-bit."""
    n = next(_counter)
    low = f"{_RUN:04x}{int(time.time() * 1000) & 0xFFFFFFFF:08x}{n:04x}"
    return ("a1b2c3d4e5f60718" + low) if bits == 128 else low


def span(
    trace_id: str,
    span_id: str,
    *,
    service: str | None = "frontend",
    name: str | None = "get",
    parent: str | None = None,
    kind: str | None = None,
    ts: int | None = NOW_US,
    duration: int | None = 1000,
    remote: str | None = None,
    tags: dict[str, str] | None = None,
    annotations: list[tuple[int, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"traceId": trace_id, "id": span_id}
    if parent:
        out["parentId"] = parent
    if kind:
        out["kind"] = kind
    if name is not None:
        out["name"] = name
    if ts is not None:
        out["timestamp"] = ts
    if duration is not None:
        out["duration"] = duration
    if service is not None:
        out["localEndpoint"] = {"serviceName": service}
    if remote is not None:
        out["remoteEndpoint"] = {"serviceName": remote}
    if annotations:
        out["annotations"] = [{"timestamp": t, "value": v} for t, v in annotations]
    if tags:
        out["tags"] = tags
    out.update(extra)
    return out


def dumps(spans: list[dict[str, Any]]) -> str:
    return json.dumps(spans)


def tag_postings(conn: apsw.Connection) -> list[tuple[int, int, int, int]]:
    """Every posting of the tag index, as (chunk, h, ts, trace_low)."""
    return [
        (chunk, h, ts, low)
        for chunk, h, blob in conn.execute("SELECT chunk, h, postings FROM tag_postings")
        for ts, low in decode(blob)
    ]
