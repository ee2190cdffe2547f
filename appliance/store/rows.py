"""Turning normalised spans into the rows the writer inserts (done outside the writer thread)."""

from __future__ import annotations

import marshal
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields
from hashlib import blake2b
from operator import itemgetter

import orjson

from tracebox.appliance.model import Span, local_service, remote_service
from tracebox.appliance.store import postings
from tracebox.appliance.store.otel_parts import Deduper, stored_form

FLAG_ERROR = 1
FLAG_SHARED = 2
FLAG_DEBUG = 4

#: Tag values longer than this (prompts, payloads) are indexed by key only; a search for such a
#: value is driven by another condition and checked on the whole trace.
MAX_INDEXED_VALUE = 256

_SIGN = 1 << 63
#: Recent (service, key, value) hashes. Values repeat (methods, routes, models) and ids do not, so
#: the cache is emptied when full; 8,192 keeps the hits (65,536 held ~13 MB of unique values).
HASH_CACHE_SIZE = 8_192

#: Span fields stored in their own columns, left out of the stored JSON (~180 bytes a span).
IN_COLUMNS = frozenset(("traceId", "parentId", "id", "kind", "name", "timestamp", "duration"))
#: What ``span_from_row`` reads, in its order.
SPAN_COLUMNS = "trace_id, parent_id, span_id, kind, name, ts, duration, span_json(json)"


def span_from_row(
    trace_id: str,
    parent_id: str | None,
    span_id: str,
    kind: str | None,
    name: str | None,
    ts: int | None,
    duration: int | None,
    body: bytes,
) -> Span:
    """A stored span as Zipkin JSON, fields in Zipkin's order. Rows written before the columns
    were left out of the JSON carry them in both places; the JSON's copy then wins, unchanged."""
    span: Span = {"traceId": trace_id}
    if parent_id is not None:
        span["parentId"] = parent_id
    span["id"] = span_id
    if kind is not None:
        span["kind"] = kind
    if name is not None:
        span["name"] = name
    if ts is not None:
        span["timestamp"] = ts
    if duration is not None:
        span["duration"] = duration
    span.update(orjson.loads(body))
    return span


def trace_low(trace_id: str) -> int:
    """The low 64 bits of a trace id as a signed integer, the key that groups 64/128-bit ids."""
    low = int(trace_id[-16:], 16)
    return low - (1 << 64) if low >= _SIGN else low


def tag_hash(service: str | None, key: str, value: str) -> int:
    """The tag index's hash of a (service, tag key, value); an annotation is (service, text, '')."""
    marker = (service, key, value)
    found = _HASHES.get(marker)
    if found is None:
        data = f"{service or ''}\x00{key}\x00{value}".encode()
        found = int.from_bytes(blake2b(data, digest_size=8).digest(), "little", signed=True)
        if len(_HASHES) >= HASH_CACHE_SIZE:
            _HASHES.clear()
        _HASHES[marker] = found
    return found


_HASHES: dict[tuple[str | None, str, str], int] = {}


#: A span row's timestamp (its place in the rows ``build_batch`` makes, and in ``INSERT_SPAN``).
_TS = itemgetter(8)


@dataclass(slots=True)
class Batch:
    """One request's spans, ready for the writer: span rows plus the index rows they imply."""

    spans: list[tuple] = field(default_factory=list)
    tags: list[tuple[int, int, bytes]] = field(default_factory=list)  # postings.pack's lists
    tag_ranges: list[tuple[int, int, int]] = field(default_factory=list)  # (part, oldest, newest ts)
    llm: list[tuple | None] = field(default_factory=list)  # aligned with spans
    otel_parts: dict[int, bytes] = field(default_factory=dict)  # OTLP resources and scopes, by hash
    # names the lists offer, each with the newest timestamp it was seen at (retention prunes by it)
    services: dict[tuple[str], int] = field(default_factory=dict)
    span_names: dict[tuple[str, str], int] = field(default_factory=dict)
    remote_services: dict[tuple[str, str], int] = field(default_factory=dict)
    autocomplete: dict[tuple[str, str], int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.spans)

    def read(self) -> Batch:
        """The rows themselves (see ``WireBatch``)."""
        return self

    def to_wire(self) -> bytes:
        """The rows as worker processes send them: builtins only (tuples, lists, dicts, str, bytes,
        int, float, None), which ``marshal`` writes about a third faster than pickle."""
        return marshal.dumps(tuple(getattr(self, name) for name in _BATCH_FIELDS))


_BATCH_FIELDS = tuple(f.name for f in fields(Batch))


@dataclass(frozen=True, slots=True)
class WireBatch:
    """A batch as a worker process sent it, read (``read``) only in the writer thread: reading a
    request's rows holds the interpreter lock for about half a millisecond, which on the event loop
    kept the writer waiting for the lock it needs between SQLite calls."""

    data: bytes
    spans: int

    def __len__(self) -> int:
        return self.spans

    def read(self) -> Batch:
        return Batch(*marshal.loads(self.data))


def indexed_terms(span: Span) -> Iterator[tuple[str, str]]:
    """The (key, value) pairs the tag index holds for a span: its tags (a value too long to index
    by key only) and its annotations, as (text, '')."""
    tags = span.get("tags")
    if tags:
        for key, value in tags.items():
            yield key, value if len(value) <= MAX_INDEXED_VALUE else ""
    for annotation in span.get("annotations", ()):
        text = annotation["value"]
        if len(text) <= MAX_INDEXED_VALUE:
            yield text, ""


def build_batch(
    spans: Iterable[Span],
    autocomplete_keys: frozenset[str] = frozenset(),
    llm_fields: Callable[[Span], tuple | None] | None = None,
) -> Batch:
    """Rows for a batch; ``llm_fields(span)`` gives the llm_calls columns of an LLM call, else None.
    The stored JSON is left plain: the writer packs it (``blobs.Compressor``)."""
    batch = Batch()
    # (part, service) -> (key, value) -> {trace_low: packed (first ts, trace_low)}; hashed once per term at the end
    postings_by_scope: dict[tuple[int, str | None], dict[tuple[str, str], dict[int, bytes]]] = {}
    dedupe = Deduper()
    names_seen: dict[tuple[str, str | None, str | None], int] = {}  # (service, name, remote) -> ts
    lows: dict[str, int] = {}  # trace id -> trace_low, parsed once per trace of the request
    for span in spans:
        if llm_fields is not None:
            batch.llm.append(llm_fields(span))
        otel = span.pop("otel", None)
        trace_id = span["traceId"]
        low = lows.get(trace_id)
        if low is None:
            low = lows[trace_id] = trace_low(trace_id)
        service = local_service(span)
        remote = remote_service(span)
        name = span.get("name")
        ts = span.get("timestamp")
        tags = span.get("tags")
        flags = (
            (FLAG_ERROR if tags and "error" in tags else 0)
            | (FLAG_SHARED if span.get("shared") else 0)
            | (FLAG_DEBUG if span.get("debug") else 0)
        )
        batch.spans.append(
            (
                low,
                trace_id,
                span["id"],
                span.get("parentId"),
                span.get("kind"),
                name,
                service,
                remote,
                ts,
                span.get("duration"),
                flags,
                orjson.dumps({k: v for k, v in span.items() if k not in IN_COLUMNS}),
                orjson.dumps(dedupe(stored_form(otel, span))) if otel else None,
            )
        )
        if not ts:
            continue
        index = len(batch.spans) - 1
        if service:
            _seen_at(names_seen, (service, name, remote), ts)
        scope = (index >> postings.CHUNK_BITS, service)
        terms = postings_by_scope.get(scope)
        if terms is None:
            terms = postings_by_scope[scope] = {}
        posting = postings.one(ts, low)
        for term in indexed_terms(span):
            traces = terms.get(term)
            if traces is None:
                terms[term] = {low: posting}
            elif low not in traces:
                traces[low] = posting
        if tags and autocomplete_keys:
            for key in autocomplete_keys & tags.keys():
                value = tags[key]
                _seen_at(batch.autocomplete, (key, value if len(value) <= MAX_INDEXED_VALUE else ""), ts)
    for (local, span_name, remote), newest in names_seen.items():  # a few per request
        _seen_at(batch.services, (local,), newest)
        if span_name:
            _seen_at(batch.span_names, (local, span_name), newest)
        if remote:
            _seen_at(batch.remote_services, (local, remote), newest)
    lists = _by_hash(postings_by_scope)
    batch.tags = postings.pack(lists)
    batch.tag_ranges = [_time_range(part, batch.spans) for part, by_hash in lists.items() if by_hash]
    batch.otel_parts = dedupe.parts
    return batch


def _by_hash(
    postings_by_scope: dict[tuple[int, str | None], dict[tuple[str, str], dict[int, bytes]]],
) -> dict[int, dict[int, dict[int, bytes]]]:
    """Posting lists keyed by part and tag hash, as ``postings.pack`` takes them; the lists of
    terms whose hashes collide are merged (each trace keeps its first posting)."""
    lists: dict[int, dict[int, dict[int, bytes]]] = {}
    for (part, service), terms in postings_by_scope.items():
        by_hash = lists.get(part)
        if by_hash is None:
            by_hash = lists[part] = {}
        for (key, value), traces in terms.items():
            h = tag_hash(service, key, value)
            found = by_hash.get(h)
            if found is None:
                by_hash[h] = traces
            else:
                for low, posting in traces.items():
                    found.setdefault(low, posting)
    return lists


def _time_range(part: int, rows: list[tuple]) -> tuple[int, int, int]:
    """(part, oldest ts, newest ts) of a part's timed spans: a range holding every posting the part
    brought (a span without tags may widen it, which only opens its chunk in a few more searches)."""
    stamps = list(
        filter(None, map(_TS, rows[part << postings.CHUNK_BITS : (part + 1) << postings.CHUNK_BITS]))
    )
    return part, min(stamps), max(stamps)


def span_postings(span: Span) -> Iterator[tuple[int, int, int]]:
    """(tag hash, ts, trace_low) of each posting a span may have brought (``build_batch`` writes
    one per trace and tag of a request, from the first span carrying it)."""
    ts = span.get("timestamp")
    if not ts:
        return
    low = trace_low(span["traceId"])
    service = local_service(span)
    for key, value in indexed_terms(span):
        yield tag_hash(service, key, value), ts, low


def _seen_at(names: dict, key: tuple, ts: int) -> None:
    if names.get(key, 0) < ts:
        names[key] = ts
