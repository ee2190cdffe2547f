"""OTLP resources and scopes, stored once each instead of once per span.

Every span of one resource repeats the same resource attributes (service, host, SDK, k8s...) and
scope; kept inline they were most of an OTLP span's bytes on disk. The ingest path replaces each
with a reference (a 64-bit hash of its JSON) and writes the part itself once; readers put it back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

import apsw
import orjson

PARTS = ("resource", "scope")
_REFS = tuple((part, f"{part}Ref") for part in PARTS)  # each part and the key of its reference
DDL = "CREATE TABLE otel_parts (h INTEGER PRIMARY KEY, json BLOB NOT NULL) WITHOUT ROWID"
INSERT = "INSERT OR IGNORE INTO otel_parts (h, json) VALUES (?, ?)"


def part_hash(blob: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(blob, digest_size=8).digest(), "big", signed=True)


class Deduper:
    """Per batch: swaps each resource/scope for ``<part>Ref`` and collects the parts to write.

    Decoders hand every span of one resource the same dict object, so most lookups hit the
    identity cache and only the first span of a resource pays for encoding and hashing.
    """

    def __init__(self) -> None:
        self.parts: dict[int, bytes] = {}
        self._by_id: dict[int, tuple[Any, int]] = {}  # id(obj) -> (obj, hash); obj kept alive

    def __call__(self, stored: dict[str, Any]) -> dict[str, Any]:
        """Swap the parts of ``stored_form``'s dict (its own, so changed in place) for references."""
        for part, ref_key in _REFS:
            obj = stored.pop(part, None)
            if obj:
                cached = self._by_id.get(id(obj))
                stored[ref_key] = cached[1] if cached is not None and cached[0] is obj else self._ref(obj)
        return stored

    def _ref(self, obj: dict[str, Any]) -> int:
        blob = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
        h = part_hash(blob)
        self.parts[h] = blob
        self._by_id[id(obj)] = (obj, h)
        return h


def stored_form(otel: dict[str, Any], span: dict[str, Any]) -> dict[str, Any]:
    """What the store keeps of a span's OTLP extras: what the Zipkin span does not already say.

    A string attribute is its tag of the same name, byte for byte, so only attributes a tag cannot
    carry (numbers, booleans, arrays, maps) are kept typed; the nanosecond times are kept only when
    they are finer than the span's microseconds. ``expand`` puts both back. Returns a new dict.
    """
    out = dict(otel)
    attributes = otel.get("attributes")
    if attributes:
        tags = span.get("tags") or {}
        typed: dict[str, Any] = {}
        strings: list[str] = []
        for key, value in attributes.items():
            if type(value) is str and tags.get(key) == value:
                strings.append(key)
            else:
                typed[key] = value
        if strings:
            if typed:
                out["attributes"] = typed
            else:
                del out["attributes"]
            out["stringTags"] = strings
    ts, duration = span.get("timestamp"), span.get("duration")
    if ts and out.get("startTimeUnixNano") == ts * 1000:
        del out["startTimeUnixNano"]
        if duration and out.get("endTimeUnixNano") == (ts + duration) * 1000:
            del out["endTimeUnixNano"]
    return out


def expand(otel: dict[str, Any], tags: dict[str, str], ts: int | None, duration: int | None) -> None:
    """Undo ``stored_form`` in place (resources and scopes are put back by ``restore``)."""
    strings = otel.pop("stringTags", None)
    if strings is not None:
        otel["attributes"] = {**{k: tags[k] for k in strings if k in tags}, **otel.get("attributes", {})}
    if ts and "startTimeUnixNano" not in otel:
        otel["startTimeUnixNano"] = ts * 1000
        if duration and "endTimeUnixNano" not in otel:
            otel["endTimeUnixNano"] = (ts + duration) * 1000


def restore(conn: apsw.Connection, extras: Iterable[dict[str, Any]]) -> None:
    """Put resources and scopes back into OTLP extras read from the store (in place)."""
    extras = list(extras)
    refs = {e[f"{part}Ref"] for e in extras for part in PARTS if f"{part}Ref" in e}
    if not refs:
        return
    found: dict[int, Any] = {}
    refs_list = list(refs)
    for i in range(0, len(refs_list), 500):
        chunk = refs_list[i : i + 500]
        marks = ",".join("?" * len(chunk))
        for h, blob in conn.execute(f"SELECT h, json FROM otel_parts WHERE h IN ({marks})", chunk):
            found[h] = orjson.loads(blob)
    for extra in extras:
        for part in PARTS:
            ref = extra.pop(f"{part}Ref", None)
            if ref is not None and ref in found:
                extra[part] = found[ref]
