"""Redaction on ingest: sensitive values never reach the database file."""

from __future__ import annotations

import pytest
import requests
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, format_trace_id

from tests.conftest import self_traced, start_tracebox
from tests.spans import NOW_US, dumps, new_trace_id, span
from tracebox.appliance.redaction import RedactionError, parse_rules

EMAIL = "jane.doe+vip@example.org"
TOKEN = "Bearer sk-live-0123456789abcdef"
CONFIG = """
[[redact]]
value_pattern = "email"
action = "mask"

[[redact]]
key = "http.request.header.authorization"
action = "drop"

[[redact]]
key = "user.id"
action = "hash"

[[redact]]
key_pattern = "^gen_ai\\\\.(input|output)\\\\.messages$"
action = "mask"
"""


@pytest.fixture
def redacting(tmp_path):
    config = tmp_path / "tracebox.toml"
    config.write_text(CONFIG)
    server = start_tracebox(tmp_path / "t.db", "--config", str(config))
    yield server
    server.stop()


def raw_bytes(db) -> bytes:
    """The database file and its WAL, byte for byte."""
    return b"".join(p.read_bytes() for p in (db, db.with_name(db.name + "-wal")) if p.exists())


def test_an_email_is_nowhere_in_the_file(redacting):
    trace_id = new_trace_id()
    sent = span(
        trace_id,
        "1",
        name=f"notify {EMAIL}",
        tags={
            "customer": f"contact {EMAIL} today",
            "http.request.header.authorization": TOKEN,
            "user.id": "user-42",
            "gen_ai.input.messages": '[{"role": "user", "content": "my secret plan"}]',
        },
        annotations=[(NOW_US + 5, f"mailed {EMAIL}")],
    )
    assert redacting.post("/api/v2/spans", dumps([sent])).status_code == 202

    provider = TracerProvider(resource=Resource.create({"service.name": "otel-svc", "owner": EMAIL}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=redacting.otlp_http_url + "/v1/traces"))
    )
    with provider.get_tracer("t").start_as_current_span("send", kind=SpanKind.CLIENT) as s:
        s.set_attributes({"email.to": EMAIL, "user.id": "user-42"})
        s.add_event("delivered", {"recipient": EMAIL})
        otel_trace = format_trace_id(s.get_span_context().trace_id)
    provider.shutdown()

    [stored] = redacting.get_json(f"/api/v2/trace/{trace_id}")
    assert stored["name"] == "notify [redacted]"
    assert stored["tags"]["customer"] == "contact [redacted] today"
    assert "http.request.header.authorization" not in stored["tags"]
    assert stored["tags"]["user.id"].startswith("sha256:")
    assert stored["tags"]["gen_ai.input.messages"] == "[redacted]"
    assert stored["annotations"][0]["value"] == "mailed [redacted]"
    [otel_span] = redacting.get_json(f"/api/v2/trace/{otel_trace}")
    assert otel_span["tags"]["user.id"] == stored["tags"]["user.id"]  # same value, same hash: still groups

    running = raw_bytes(redacting.db)  # while serving: the WAL holds the newest pages
    redacting.stop()  # then everything checkpointed into the main file
    for data in (running, raw_bytes(redacting.db)):
        assert b"jane.doe" not in data and b"example.org" not in data
        assert b"sk-live" not in data
        assert b"user-42" not in data
        assert b"my secret plan" not in data
    assert b"otel-svc" in running  # the search does find what was stored


def test_hashes_are_salted_per_database(tmp_path):
    first = parse_rules([{"key": "user.id", "action": "hash"}], salt="a")
    second = parse_rules([{"key": "user.id", "action": "hash"}], salt="b")
    one = first([{"tags": {"user.id": "42"}}])[0]["tags"]["user.id"]
    assert one == first([{"tags": {"user.id": "42"}}])[0]["tags"]["user.id"]
    assert one != second([{"tags": {"user.id": "42"}}])[0]["tags"]["user.id"]


def test_self_tracing_spans_are_redacted_like_received_ones(tmp_path):
    """tracebox's own spans go through the same pipeline: a query path carrying an email is masked."""
    config = tmp_path / "tracebox.toml"
    config.write_text(CONFIG)
    server = start_tracebox(tmp_path / "t.db", "--config", str(config), "--self-tracing")
    try:
        caller_trace = "4bf92f3577b34da6a3ce929d0e0e4737"
        headers = {"traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01"}
        assert (
            requests.get(f"{server.url}/api/v2/trace/{EMAIL}", headers=headers, timeout=10).status_code == 400
        )
        [own] = self_traced(server, caller_trace)
        assert own["tags"]["http.path"] == "/api/v2/trace/[redacted]"
        assert EMAIL not in str(own)
    finally:
        server.stop()


def test_redaction_leaves_shared_otlp_resources_alone():
    redact = parse_rules([{"key": "secret", "action": "drop"}])
    resource = {"attributes": {"secret": "x", "service.name": "a"}}
    spans = [{"otel": {"resource": resource}}, {"otel": {"resource": resource}}]
    out = redact(spans)
    assert out[0]["otel"]["resource"]["attributes"] == {"service.name": "a"}
    assert resource["attributes"] == {"secret": "x", "service.name": "a"}  # the shared original is intact


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ([{"key": "a", "action": "shred"}], "action should be one of drop, mask, hash"),
        ([{"action": "mask"}], "exactly one of key, key_pattern, value_pattern"),
        ([{"value_pattern": "(", "action": "mask"}], "bad regular expression"),
        ([{"key": "a", "colour": "red"}], "unknown keys colour"),
    ],
)
def test_bad_rules_are_refused_with_the_reason(rules, message):
    with pytest.raises(RedactionError, match=message):
        parse_rules(rules)


def test_a_bad_rule_stops_the_server_with_a_message(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text('[[redact]]\nkey = "a"\naction = "shred"\n')
    with pytest.raises(RuntimeError, match="action should be one of"):
        start_tracebox(tmp_path / "t.db", "--config", str(config))


def test_card_numbers_and_bearer_tokens(tmp_path):
    redact = parse_rules([{"value_pattern": "card_number"}, {"value_pattern": "bearer_token"}])
    [out] = redact(
        [
            {
                "tags": {
                    "a": "card 4111 1111 1111 1111 ok",
                    "b": "Authorization: Bearer abcdefgh12345",
                    "c": "order 12345",
                }
            }
        ]
    )
    assert out["tags"] == {"a": "card [redacted] ok", "b": "Authorization: [redacted]", "c": "order 12345"}
