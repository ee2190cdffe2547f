"""The database schema and its migrations.

Each migration runs in its own transaction together with the ``user_version`` bump, so a crash
mid-upgrade leaves the previous version intact. Add a migration by appending to ``MIGRATIONS``;
never edit one that has shipped.
"""

from __future__ import annotations

from collections.abc import Callable

import apsw

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
CREATE INDEX spans_service_ts ON spans (service, ts);
CREATE INDEX spans_service_name_ts ON spans (service, name, ts);
CREATE INDEX spans_remote_ts ON spans (remote_service, ts);
CREATE INDEX spans_ts ON spans (ts);

-- One row per distinct (trace, service, tag key, value) and per annotation value, for annotationQuery.
CREATE TABLE span_tags (
    key TEXT NOT NULL,
    value TEXT NOT NULL,       -- '' for an annotation, whose text is in key
    ts INTEGER NOT NULL,
    service TEXT,
    trace_low INTEGER NOT NULL
);
CREATE INDEX span_tags_key_value_ts ON span_tags (key, value, ts);

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

CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
"""

MIGRATIONS: list[str | Callable[[apsw.Connection], None]] = [SPANS]


def schema_version(conn: apsw.Connection) -> int:
    return conn.execute("PRAGMA user_version").fetchall()[0][0]


def migrate(conn: apsw.Connection) -> int:
    """Bring the database to the newest schema; return the version reached."""
    current = schema_version(conn)
    if current > len(MIGRATIONS):
        raise RuntimeError(
            f"database schema version {current} is newer than this tracebox ({len(MIGRATIONS)}); upgrade tracebox"
        )
    for version, step in enumerate(MIGRATIONS[current:], start=current + 1):
        with conn:  # one transaction per step, version bump included
            if callable(step):
                step(conn)
            else:
                conn.execute(step)
            conn.execute(f"PRAGMA user_version = {version}")
    return len(MIGRATIONS)
