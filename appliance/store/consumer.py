"""Zipkin's SpanConsumer role: inserting prepared batches, run inside the writer thread."""

from __future__ import annotations

import apsw

from tracebox.appliance.store import otel_parts, tag_index
from tracebox.appliance.store.blobs import Compressor
from tracebox.appliance.store.dependencies import mark_dirty
from tracebox.appliance.store.rows import Batch

INSERT_SPAN = (
    "INSERT INTO spans (id, trace_low, trace_id, span_id, parent_id, kind, name, service, remote_service,"
    " ts, duration, flags, json, otel) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
INSERT_LLM = (
    "INSERT INTO llm_calls (span_id, trace_id, ts, duration, service, name, provider, request_model,"
    " response_model, input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, reasoning_tokens,"
    " finish_reasons, ttft_us, conversation_id, cost_usd, cost_source, price_version, user_id, tenant_id)"
    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)
_NAME_TABLES = {
    "services": (
        "INSERT INTO service_names VALUES (?, ?) ON CONFLICT DO UPDATE SET last_ts = max(last_ts, excluded.last_ts)"
    ),
    "span_names": (
        "INSERT INTO span_names VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET last_ts = max(last_ts, excluded.last_ts)"
    ),
    "remote_services": (
        "INSERT INTO remote_service_names VALUES (?, ?, ?)"
        " ON CONFLICT DO UPDATE SET last_ts = max(last_ts, excluded.last_ts)"
    ),
    "autocomplete": (
        "INSERT INTO autocomplete_tags VALUES (?, ?, ?) ON CONFLICT DO UPDATE SET last_ts = max(last_ts, excluded.last_ts)"
    ),
}
#: A name already known is written again only when its last-seen time moves by this much (µs),
#: so the name tables stay current for retention without a write per span.
NAME_REFRESH_US = 3_600_000_000


class SpanConsumer:
    """Inserts batches; owns the span id counter and the caches of known names (writer thread only)."""

    def __init__(self, conn: apsw.Connection) -> None:
        row = conn.execute(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'spans'), 0),"
            " coalesce((SELECT max(id) FROM spans), 0))"
        ).fetchall()
        self.last_id: int = row[0][0]
        self._seen: dict[str, dict[tuple, int]] = {table: {} for table in _NAME_TABLES}
        self._parts: set[int] = set()  # OTLP resources and scopes already written
        self.compressor = Compressor()

    def __call__(self, conn: apsw.Connection, batch: Batch) -> int:
        """Insert one batch; return the id of its last span (the engine's cursor moves past it)."""
        first = tag_index.first_id(self.last_id, len(batch))
        pack = self.compressor.current(conn)
        if pack is None:
            rows = [(first + i, *row) for i, row in enumerate(batch.spans)]
        else:  # the last two columns are the span's JSON and its OTLP extras (or None)
            rows = [
                (first + i, *row[:-2], pack(row[-2]), row[-1] and pack(row[-1]))
                for i, row in enumerate(batch.spans)
            ]
        conn.executemany(INSERT_SPAN, rows)
        self.last_id = first + len(rows) - 1
        mark_dirty(conn, batch.spans, first, self.last_id)
        if batch.tags:
            tag_index.insert(conn, batch.tags, batch.tag_ranges, first)
        llm_rows = [(first + i, *llm) for i, llm in enumerate(batch.llm) if llm is not None]
        if llm_rows:
            conn.executemany(INSERT_LLM, llm_rows)
        new_parts = [(h, blob) for h, blob in batch.otel_parts.items() if h not in self._parts]
        if new_parts:
            conn.executemany(otel_parts.INSERT, new_parts)
            self._parts.update(h for h, _ in new_parts)
        self._names(conn, "services", batch.services)
        self._names(conn, "span_names", batch.span_names)
        self._names(conn, "remote_services", batch.remote_services)
        self._names(conn, "autocomplete", batch.autocomplete)
        return self.last_id

    def _names(self, conn: apsw.Connection, table: str, names: dict[tuple, int]) -> None:
        seen = self._seen[table]
        fresh = []
        for key, ts in names.items():
            last = seen.get(key)
            if last is None or ts > last + NAME_REFRESH_US:
                seen[key] = ts
                fresh.append((*key, ts))
        if fresh:
            conn.executemany(_NAME_TABLES[table], fresh)

    def forget_names(self) -> None:
        """Drop the caches of what is written (after a rollback, or retention pruning names), so
        names and OTLP parts seen again are written again."""
        for seen in self._seen.values():
            seen.clear()
        self._parts.clear()
