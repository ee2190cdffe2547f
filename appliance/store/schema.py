"""The database schema and its migrations.

Each migration runs in its own transaction together with its version bump (in ``meta``), so a
crash mid-upgrade leaves the previous version intact. Add a migration by appending to ``MIGRATIONS``;
never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

from tracebox.appliance.store import blobs
from tracebox.appliance.store.dependencies import create_tables as create_dependency_tables
from tracebox.appliance.store.otel_parts import DDL as OTEL_PARTS_DDL
from tracebox.appliance.store.slots import SLOT
from tracebox.appliance.store.tag_index import migrate_from_span_tags, migrate_to_postings

SPANS = """
CREATE TABLE spans (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- commit order: the anomaly engine's cursor
    trace_low INTEGER NOT NULL,            -- low 64 bits of the trace id, signed
    trace_id TEXT NOT NULL,                -- 16 or 32 lower-hex characters
    span_id TEXT NOT NULL,
    parent_id TEXT,
    kind TEXT,
    name TEXT,
    service TEXT,
    remote_service TEXT,
    ts INTEGER,                            -- epoch microseconds
    duration INTEGER,
    flags INTEGER NOT NULL DEFAULT 0,      -- 1 error tag, 2 shared, 4 debug
    json BLOB NOT NULL,                    -- the span as Zipkin v2 JSON
    otel BLOB                              -- OTLP extras (resource, scope, typed attributes...) as JSON
);
CREATE INDEX spans_trace ON spans (trace_low);
-- The search drivers read trace_low (and test duration) from these without touching the table.
CREATE INDEX spans_service_ts ON spans (service, ts, duration, trace_low);
CREATE INDEX spans_service_name_ts ON spans (service, name, ts, duration, trace_low);
CREATE INDEX spans_remote_ts ON spans (remote_service, ts) WHERE remote_service IS NOT NULL;
CREATE INDEX spans_ts ON spans (ts);

-- annotationQuery's index (moved to tag_index by a later step, see store.tag_index): one row per distinct (trace, service, tag key=value) and (trace,
-- service, annotation), keyed by a 64-bit hash of (service, key, value) (``rows.tag_hash``; an
-- annotation's text is the key, its value ''). Integers only and clustered on the key, so a search
-- is one backwards range scan and a row costs ~30 bytes; a hash collision only adds a candidate,
-- which the exact test on the whole trace drops.
CREATE TABLE span_tags (
    h INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    trace_low INTEGER NOT NULL,
    PRIMARY KEY (h, ts, trace_low)
) WITHOUT ROWID;

CREATE TABLE service_names (service TEXT PRIMARY KEY, last_ts INTEGER) WITHOUT ROWID;
CREATE TABLE span_names (service TEXT, name TEXT, last_ts INTEGER, PRIMARY KEY (service, name)) WITHOUT ROWID;
CREATE TABLE remote_service_names (
    service TEXT, remote_service TEXT, last_ts INTEGER, PRIMARY KEY (service, remote_service)
) WITHOUT ROWID;
CREATE TABLE autocomplete_tags (key TEXT, value TEXT, last_ts INTEGER, PRIMARY KEY (key, value)) WITHOUT ROWID;

-- LLM calls, normalised from every GenAI convention (see appliance.genai).
CREATE TABLE llm_calls (
    span_id INTEGER PRIMARY KEY,  -- spans.id
    trace_id TEXT NOT NULL,
    ts INTEGER,
    duration INTEGER,
    service TEXT,
    name TEXT,
    provider TEXT,
    request_model TEXT,
    response_model TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cache_read_tokens INTEGER,
    cache_write_tokens INTEGER,
    reasoning_tokens INTEGER,
    finish_reasons TEXT,      -- JSON list
    ttft_us INTEGER,
    conversation_id TEXT,
    cost_usd REAL,
    cost_source TEXT,         -- 'reported' | 'computed'
    price_version TEXT,
    user_id TEXT,
    tenant_id TEXT
);
CREATE INDEX llm_calls_ts ON llm_calls (ts);
CREATE INDEX llm_calls_trace ON llm_calls (trace_id);
"""

Step = str | Callable[[apsw.Connection], None]

SLOTTED_INDEXES = f"""
DROP INDEX spans_service_ts;
DROP INDEX spans_service_name_ts;
DROP INDEX spans_remote_ts;
DROP INDEX spans_ts;
CREATE INDEX spans_service_slot ON spans (service, {SLOT}, id, ts, duration, trace_low);
CREATE INDEX spans_service_name_slot ON spans (service, name, {SLOT}, id, ts, duration, trace_low);
CREATE INDEX spans_remote_slot ON spans (remote_service, {SLOT}, id, ts) WHERE remote_service IS NOT NULL;
CREATE INDEX spans_slot ON spans ({SLOT}, id, ts);
"""

MIGRATIONS: list[Step] = [
    SPANS,
    create_dependency_tables,
    OTEL_PARTS_DDL,
    migrate_from_span_tags,
    migrate_to_postings,
    blobs.DDL,
    SLOTTED_INDEXES,
    # searches by service alone read the service+name index (store.queries._service_candidates)
    "DROP INDEX spans_service_slot",
]

_META = "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID"


def schema_version(conn: apsw.Connection, component: str = "core") -> int:
    """The version a component's tables are at (0: not created yet); reads only."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchall():
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (f"schema:{component}",)).fetchall()
    return int(row[0][0]) if row else 0


def migrate(conn: apsw.Connection, steps: list[Step] = MIGRATIONS, component: str = "core") -> int:
    """Bring a component's tables to its newest schema; return the version reached.

    The core owns ``MIGRATIONS``; other parts of tracebox (the anomaly engine, the alert outbox)
    keep their own lists under their own component name, so each can evolve its tables alone.
    """
    conn.execute(_META)
    current = schema_version(conn, component)
    if current > len(steps):
        raise RuntimeError(
            f"the database's {component} schema is version {current}, newer than this tracebox's "
            f"({len(steps)}); upgrade tracebox"
        )
    for version, step in enumerate(steps[current:], start=current + 1):
        with conn:  # one transaction per step, version bump included
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (f"schema:{component}", version),
            )
    return len(steps)
