"""LLM calls through the live server: normalised from two conventions, priced, and queried."""

from __future__ import annotations

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind, format_trace_id

from tests.spans import NOW_US, dumps, new_trace_id, span
from tracebox.appliance.pricing import Pricer

GENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.response.finish_reasons": ("stop",),
}
OPENINFERENCE = {
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.model_name": "gpt-4o",
    "llm.token_count.prompt": 1200,
    "llm.token_count.completion": 300,
    "llm.token_count.total": 1500,
}


def export(endpoint: str, service: str, attributes: dict) -> str:
    """One CLIENT span through the real OTLP/HTTP exporter; returns its trace id."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces")))
    with provider.get_tracer("tests.llm").start_as_current_span("chat gpt-4o", kind=SpanKind.CLIENT) as s:
        s.set_attributes(attributes)
        trace_id = format_trace_id(s.get_span_context().trace_id)
    provider.shutdown()
    return trace_id


def llm_of(server, trace_id: str) -> dict:
    return server.get_json(f"/api/tracebox/traces/{trace_id}/llm")


def test_genai_and_openinference_spans_normalise_alike(tracebox):
    url = tracebox.otlp_http_url
    genai_trace = export(url, "genai-svc", GENAI)
    openinference_trace = export(url, "oi-svc", OPENINFERENCE)
    genai, oi = llm_of(tracebox, genai_trace), llm_of(tracebox, openinference_trace)
    expected = Pricer().cost(
        reported=None,
        provider="openai",
        models=("gpt-4o",),
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=None,
        cache_write_tokens=None,
        timestamp_us=None,
    )
    for usage in (genai, oi):
        assert usage["calls"] == 1
        assert (usage["inputTokens"], usage["outputTokens"]) == (1200, 300)
        assert usage["costUsd"] == pytest.approx(expected.usd)
        assert usage["reportedCostCalls"] == 0
    by_service = {row["key"]: row for row in tracebox.get_json("/api/tracebox/llm/usage", groupBy="service")}
    assert by_service["genai-svc"]["costUsd"] == pytest.approx(by_service["oi-svc"]["costUsd"])


def test_reported_cost_is_never_overwritten(tracebox):
    trace_id = new_trace_id()
    tags = {
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": "1000",
        "gen_ai.usage.output_tokens": "10",
        "gen_ai.usage.cost": "0.5",
    }
    assert (
        tracebox.post(
            "/api/v2/spans", dumps([span(trace_id, "1", service="reported", tags=tags)])
        ).status_code
        == 202
    )
    usage = llm_of(tracebox, trace_id)
    assert usage["costUsd"] == 0.5 and usage["reportedCostCalls"] == 1


def test_usage_grouping_finish_reasons_ttft_and_top_traces(tracebox):
    service = "llm-grouping"
    spans = []
    for i, (user, reason, ttft) in enumerate(
        [
            ("alice", "stop", 0.2),
            ("alice", "length", 0.4),
            ("bob", "stop", 0.3),
            ("bob", "content_filter", 0.5),
        ]
    ):
        tags = {
            "gen_ai.provider.name": "anthropic",
            "gen_ai.request.model": "claude-sonnet-4",
            "gen_ai.usage.input_tokens": str(100 * (i + 1)),
            "gen_ai.usage.output_tokens": "50",
            "gen_ai.response.finish_reasons": f'["{reason}"]',
            "gen_ai.response.time_to_first_chunk": str(ttft),
            "user.id": user,
            "tenant.id": "acme",
        }
        spans.append(span(new_trace_id(), "1", service=service, tags=tags, ts=NOW_US + i))
    assert tracebox.post("/api/v2/spans", dumps(spans)).status_code == 202
    by_user = {
        r["key"]: r for r in tracebox.get_json("/api/tracebox/llm/usage", groupBy="user", serviceName=service)
    }
    assert by_user["alice"]["inputTokens"] == 300 and by_user["bob"]["inputTokens"] == 700
    by_tag = tracebox.get_json("/api/tracebox/llm/usage", groupBy="tag:tenant.id", serviceName=service)
    assert [(r["key"], r["calls"]) for r in by_tag] == [("acme", 4)]
    reasons = tracebox.get_json("/api/tracebox/llm/finish-reasons", serviceName=service)
    assert {r["reason"]: r["count"] for r in reasons} == {"stop": 2, "length": 1, "content_filter": 1}
    [ttft] = tracebox.get_json("/api/tracebox/llm/ttft", serviceName=service)
    assert ttft["count"] == 4 and 300_000 <= ttft["p50"] <= 400_000
    top = tracebox.get_json("/api/tracebox/llm/top-traces", serviceName=service, limit=2)
    assert len(top) == 2 and top[0]["costUsd"] >= top[1]["costUsd"] > 0
    assert top[0]["inputTokens"] == 400


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        ("/api/tracebox/llm/usage", {"groupBy": "color"}, "groupBy should be one of"),
        ("/api/tracebox/llm/usage", {"lookback": "-5"}, "lookback <= 0"),
        ("/api/tracebox/llm/top-traces", {"limit": "0"}, "limit <= 0"),
        ("/api/tracebox/llm/timeseries", {"interval": "1", "lookback": "86400000"}, "interval too small"),
    ],
)
def test_bad_llm_query_parameters(tracebox, path, params, message):
    response = tracebox.get(path, **params)
    assert response.status_code == 400 and message in response.text
