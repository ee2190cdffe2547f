"""LLM spans from several instrumentation conventions, made by the real OpenTelemetry SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import genai_prices
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tracebox.appliance.codecs.otlp import decode_otlp_protobuf
from tracebox.appliance.genai import extract_llm
from tracebox.appliance.pricing import Pricer

START_NS = 1_750_000_000_000_000_000
MODEL = "gpt-4o-2024-08-06"

GENAI = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.response.model": MODEL,
    "gen_ai.usage.input_tokens": 1200,
    "gen_ai.usage.output_tokens": 300,
    "gen_ai.usage.cache_read.input_tokens": 200,
    "gen_ai.usage.cache_creation.input_tokens": 0,
    "gen_ai.usage.reasoning.output_tokens": 40,
    "gen_ai.response.finish_reasons": ("stop",),
    "gen_ai.response.time_to_first_chunk": 0.35,
    "gen_ai.conversation.id": "conv-1",
}
OPENINFERENCE = {
    "openinference.span.kind": "LLM",
    "llm.provider": "openai",
    "llm.request.model_name": "gpt-4o",
    "llm.model_name": MODEL,
    "llm.token_count.prompt": 1200,
    "llm.token_count.completion": 300,
    "llm.token_count.total": 1500,
    "llm.token_count.prompt_details.cache_read": 200,
    "llm.token_count.prompt_details.cache_write": 0,
    "llm.token_count.completion_details.reasoning": 40,
    "llm.finish_reason": "stop",
    "session.id": "conv-1",
}


def _otlp_spans(*attribute_sets: dict) -> list[dict]:
    """Spans through the SDK, its OTLP encoder and our decoder, in the order given."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": "assistant"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("llm-instrumentation")
    for i, attributes in enumerate(attribute_sets):
        span = tracer.start_span(
            f"span-{i}", kind=SpanKind.CLIENT, attributes=attributes, start_time=START_NS
        )
        span.end(end_time=START_NS + 2_000_000_000)
    decoded = decode_otlp_protobuf(encode_spans(memory.get_finished_spans()).SerializeToString()).spans
    return sorted(decoded, key=lambda span: span["name"])


def _zipkin_view(span: dict) -> dict:
    """The same span as a Zipkin client would have sent it: string tags only."""
    return {key: value for key, value in span.items() if key != "otel"}


def _table_price(model: str, provider: str, input_tokens: int, output_tokens: int, cache_read: int) -> float:
    usage = genai_prices.Usage(
        input_tokens=input_tokens, output_tokens=output_tokens, cache_read_tokens=cache_read
    )
    at = datetime.fromtimestamp(START_NS / 1e9, UTC)
    return float(
        genai_prices.calc_price(usage, model, provider_id=provider, genai_request_timestamp=at).total_price
    )


def test_genai_and_openinference_spans_for_the_same_call_normalise_alike():
    genai, openinference = (extract_llm(span) for span in _otlp_spans(GENAI, OPENINFERENCE))
    expected_cost = _table_price(MODEL, "openai", 1200, 300, 200)
    assert genai == {
        "provider": "openai",
        "request_model": "gpt-4o",
        "response_model": MODEL,
        "input_tokens": 1200,
        "output_tokens": 300,
        "cache_read_tokens": 200,
        "cache_write_tokens": 0,
        "reasoning_tokens": 40,
        "finish_reasons": ["stop"],
        "ttft_us": 350_000,
        "conversation_id": "conv-1",
        "cost_usd": pytest.approx(expected_cost),
        "cost_source": "computed",
        "price_version": f"genai-prices {genai_prices.__version__}",
    }
    assert expected_cost > 0
    differs = {key for key in genai if genai[key] != openinference[key]}
    assert differs == {"ttft_us"}  # OpenInference has no time-to-first-token attribute
    assert openinference["ttft_us"] is None


def test_zipkin_tags_normalise_like_typed_otlp_attributes():
    for span in _otlp_spans(GENAI, OPENINFERENCE):
        assert extract_llm(_zipkin_view(span)) == extract_llm(span)


def test_finish_reasons_from_a_comma_list_tag():
    span = _zipkin_view(_otlp_spans(GENAI)[0])
    span["tags"]["gen_ai.response.finish_reasons"] = "length, stop"
    assert extract_llm(span)["finish_reasons"] == ["length", "stop"]


def test_older_genai_names_and_a_reported_openlit_cost():
    span = _otlp_spans(
        {
            "gen_ai.system": "anthropic",
            "gen_ai.request.model": "claude-3-5-sonnet-20241022",
            "gen_ai.usage.prompt_tokens": 1000,
            "gen_ai.usage.completion_tokens": 100,
            "gen_ai.usage.cost": 0.5,
            "gen_ai.server.time_to_first_token": 1.5,
        }
    )[0]
    llm = extract_llm(span)
    assert (llm["provider"], llm["request_model"], llm["response_model"]) == (
        "anthropic",
        "claude-3-5-sonnet-20241022",
        None,
    )
    assert (llm["input_tokens"], llm["output_tokens"], llm["ttft_us"]) == (1000, 100, 1_500_000)
    assert (llm["cost_usd"], llm["cost_source"], llm["price_version"]) == (0.5, "reported", None)
    assert _table_price("claude-3-5-sonnet-20241022", "anthropic", 1000, 100, 0) != 0.5


def test_a_reported_zero_cost_is_kept():
    llm = extract_llm(_otlp_spans({**OPENINFERENCE, "llm.cost.total": 0.0})[0])
    assert (llm["cost_usd"], llm["cost_source"]) == (0.0, "reported")


def test_langfuse_generation():
    span = _otlp_spans(
        {
            "langfuse.observation.type": "generation",
            "langfuse.observation.model.name": "gpt-4o-mini",
            "langfuse.observation.usage_details": '{"input": 500, "output": 20, "input_cache_read": 100}',
            "langfuse.observation.cost_details": '{"input": 0.001, "output": 0.002}',
            "langfuse.observation.completion_start_time": '"2025-06-15T15:06:40.250000Z"',
            "langfuse.session.id": "s-9",
        }
    )[0]
    llm = extract_llm(span)
    assert (llm["request_model"], llm["response_model"]) == ("gpt-4o-mini", "gpt-4o-mini")
    assert (llm["input_tokens"], llm["output_tokens"], llm["cache_read_tokens"]) == (500, 20, 100)
    assert llm["cost_usd"] == pytest.approx(0.003) and llm["cost_source"] == "reported"
    assert llm["conversation_id"] == "s-9"
    assert llm["ttft_us"] == 250_000  # START_NS is 2025-06-15T15:06:40Z


def test_operator_override_wins_over_the_table():
    pricer = Pricer({MODEL: {"input_per_mtok": 1.0, "output_per_mtok": 2.0, "cache_read_per_mtok": 0.1}})
    llm = extract_llm(_otlp_spans(GENAI)[0], pricer)
    assert llm["cost_usd"] == pytest.approx((1000 * 1.0 + 200 * 0.1 + 300 * 2.0) / 1e6)
    assert (llm["cost_source"], llm["price_version"]) == ("computed", "override")


def test_override_needs_input_and_output_prices():
    with pytest.raises(ValueError, match="needs input_per_mtok and output_per_mtok"):
        Pricer({"m": {"input_per_mtok": 1.0, "typo_per_mtok": 2.0}})


def test_unknown_model_has_tokens_but_no_cost():
    llm = extract_llm(
        _otlp_spans({**GENAI, "gen_ai.response.model": "in-house-7b", "gen_ai.request.model": "in-house-7b"})[
            0
        ]
    )
    assert llm["input_tokens"] == 1200
    assert (llm["cost_usd"], llm["cost_source"], llm["price_version"]) == (None, None, None)


@pytest.mark.parametrize(
    "attributes",
    [
        {"http.request.method": "GET", "server.address": "api.openai.com"},
        {"gen_ai.request.model": "gpt-4o"},  # a model alone is no evidence of a call
        {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2},  # usage without a model
        {**GENAI, "gen_ai.operation.name": "invoke_agent"},  # sums its children's usage
        {**OPENINFERENCE, "openinference.span.kind": "CHAIN"},
    ],
)
def test_spans_that_are_not_llm_calls(attributes):
    assert extract_llm(_otlp_spans(attributes)[0]) is None


def test_an_operation_with_a_model_is_a_call_even_without_usage():
    llm = extract_llm(_otlp_spans({"gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4o"})[0])
    assert llm["request_model"] == "gpt-4o" and llm["input_tokens"] is None and llm["cost_usd"] is None


def test_pricing_never_touches_the_network(monkeypatch):
    import socket

    from tracebox.appliance import pricing

    def refuse(*args, **kwargs):
        raise AssertionError("pricing tried to use the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    pricing._lookup.cache_clear()
    assert extract_llm(_otlp_spans(GENAI)[0])["cost_source"] == "computed"
