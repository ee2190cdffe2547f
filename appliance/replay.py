"""Replaying captured spans into a tracebox in timestamp order (``tracebox replay``).

For backtests of the anomaly engine and for loading captured data: files of Zipkin v2 or v1 JSON,
OTLP JSON (one ``ExportTraceServiceRequest``), or JSON Lines of either, plain or gzipped, are
decoded with the server's own codecs, sorted by when each span ended (the order SDKs report them
in), and posted in order over one connection so the engine sees event time move forward.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable
from pathlib import Path

import orjson

from tracebox.appliance.codecs.otlp import decode_otlp_json
from tracebox.appliance.codecs.zipkin_json import decode_v2, encode_spans
from tracebox.appliance.codecs.zipkin_v1 import decode_v1
from tracebox.appliance.demo import Payload, SendReport, send_payloads
from tracebox.appliance.model import DecodeError, Span

MAX_FILE_BYTES = 2 * 1024**3


def load(path: Path) -> list[Span]:
    """Every span in a file, whatever the supported format; DecodeError names the file and line."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) > MAX_FILE_BYTES:
        raise DecodeError(f"{path}: larger than {MAX_FILE_BYTES} bytes; split it")
    text = data.strip()
    try:
        return _decode_document(text)
    except DecodeError:
        if b"\n" not in text:
            raise
    spans: list[Span] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                spans += _decode_document(line)
            except DecodeError as exc:
                raise DecodeError(f"{path}:{number}: {exc}") from None
    return spans


def _decode_document(raw: bytes) -> list[Span]:
    if raw.startswith(b"{"):
        batch = decode_otlp_json(raw)
        if batch.rejected:
            raise DecodeError(batch.error_message)
        return batch.spans
    if raw.startswith(b"["):
        return decode_v1(raw) if _is_v1(raw) else decode_v2(raw)
    raise DecodeError("expected a JSON list of Zipkin spans or an OTLP JSON object")


def _is_v1(raw: bytes) -> bool:
    """v1 spans carry endpoints inside annotations and binaryAnnotations; v2 spans never do."""
    try:
        first = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None
    head = first[0] if first and isinstance(first[0], dict) else {}
    return "binaryAnnotations" in head or any(
        isinstance(a, dict) and "endpoint" in a for a in head.get("annotations", ())
    )


def in_report_order(spans: Iterable[Span]) -> list[Span]:
    """Sorted by end time: a span is reported when it finishes."""
    return sorted(spans, key=lambda s: (s.get("timestamp", 0) + s.get("duration", 0), s.get("timestamp", 0)))


async def replay(
    url: str,
    paths: list[Path],
    *,
    batch_size: int = 512,
    progress: Callable[[int], None] | None = None,
) -> SendReport:
    spans: list[Span] = []
    for path in paths:
        spans += load(path)
    ordered = in_report_order(spans)
    payloads = (
        Payload(encode_spans(ordered[i : i + batch_size]), len(ordered[i : i + batch_size]))
        for i in range(0, len(ordered), batch_size)
    )
    return await send_payloads(url, payloads, fmt="zipkin-json", concurrency=1, progress=progress)
