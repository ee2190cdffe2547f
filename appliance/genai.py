"""Recognise LLM calls in a span, whatever instrumentation made it, and normalise them.

Each field is read from the first attribute that carries it, in this order of conventions:
OpenTelemetry GenAI (current names, then older ones), OpenInference, OpenLLMetry/Traceloop,
OpenLIT, Langfuse. Typed values from ``span["otel"]["attributes"]`` are preferred; Zipkin-sourced
spans carry the same names as string tags, and both parse to the same result.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

from tracebox.appliance.model import Span
from tracebox.appliance.pricing import Pricer

PROVIDER = ("gen_ai.provider.name", "gen_ai.system", "llm.provider", "llm.system")
REQUEST_MODEL = ("gen_ai.request.model", "llm.request.model_name", "llm.request.model", "llm.model_name")
RESPONSE_MODEL = ("gen_ai.response.model", "llm.response.model_name", "llm.response.model", "llm.model_name")
INPUT_TOKENS = (
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "llm.token_count.prompt",
    "llm.usage.prompt_tokens",
)
OUTPUT_TOKENS = (
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.completion_tokens",
    "llm.token_count.completion",
    "llm.usage.completion_tokens",
)
CACHE_READ_TOKENS = (
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cache_read_input_tokens",
    "llm.token_count.prompt_details.cache_read",
    "llm.usage.cache_read_input_tokens",
)
CACHE_WRITE_TOKENS = (
    "gen_ai.usage.cache_creation.input_tokens",
    "gen_ai.usage.cache_creation_input_tokens",
    "llm.token_count.prompt_details.cache_write",
    "llm.usage.cache_creation_input_tokens",
)
REASONING_TOKENS = (
    "gen_ai.usage.reasoning.output_tokens",
    "gen_ai.usage.reasoning_tokens",
    "llm.token_count.completion_details.reasoning",
)
FINISH_REASONS = ("gen_ai.response.finish_reasons", "llm.response.finish_reason", "llm.finish_reason")
TTFT_SECONDS = ("gen_ai.response.time_to_first_chunk", "gen_ai.server.time_to_first_token")
CONVERSATION = ("gen_ai.conversation.id", "session.id", "langfuse.session.id", "gen_ai.session.id")
REPORTED_COST = ("gen_ai.usage.cost", "llm.cost.total")
OPERATION = ("gen_ai.operation.name", "llm.request.type")
# Spans that describe work around model calls; their usage, if any, sums their children's.
_NOT_MODEL_CALLS = {
    "gen_ai.operation.name": {"execute_tool", "invoke_agent", "create_agent", "invoke_workflow"},
    "openinference.span.kind": {"AGENT", "CHAIN", "TOOL", "RETRIEVER", "RERANKER", "GUARDRAIL", "EVALUATOR"},
    "langfuse.observation.type": {
        "span",
        "agent",
        "tool",
        "chain",
        "retriever",
        "evaluator",
        "guardrail",
        "event",
    },
}
# Langfuse's free-form usage_details keys seen in the wild, per field.
_LANGFUSE_USAGE = {
    "input": ("input", "input_tokens", "prompt_tokens"),
    "output": ("output", "output_tokens", "completion_tokens"),
    "cache_read": ("input_cache_read", "cache_read_input_tokens", "input_cached_tokens", "cache_read"),
    "cache_write": ("input_cache_creation", "cache_creation_input_tokens", "cache_write"),
    "reasoning": ("output_reasoning", "output_reasoning_tokens", "reasoning_tokens"),
}
_LANGFUSE_MODEL = "langfuse.observation.model.name"
_LANGFUSE_USAGE_DETAILS = "langfuse.observation.usage_details"
_LANGFUSE_COST_DETAILS = "langfuse.observation.cost_details"
_LANGFUSE_COMPLETION_START = "langfuse.observation.completion_start_time"
# An LLM call names its provider or model under one of these; a span with none is not one.
_MODEL_KEYS = frozenset((*PROVIDER, *REQUEST_MODEL, *RESPONSE_MODEL, _LANGFUSE_MODEL))
# Every attribute read here: an LLM span's attributes are narrowed to these once (``_Values``).
_READ = frozenset(
    (
        *_MODEL_KEYS,
        *INPUT_TOKENS,
        *OUTPUT_TOKENS,
        *CACHE_READ_TOKENS,
        *CACHE_WRITE_TOKENS,
        *REASONING_TOKENS,
        *FINISH_REASONS,
        *TTFT_SECONDS,
        *CONVERSATION,
        *REPORTED_COST,
        *OPERATION,
        *_NOT_MODEL_CALLS,
        _LANGFUSE_USAGE_DETAILS,
        _LANGFUSE_COST_DETAILS,
        _LANGFUSE_COMPLETION_START,
    )
)

_DEFAULT_PRICER = Pricer()


def extract_llm(span: Span, pricer: Pricer = _DEFAULT_PRICER) -> dict[str, Any] | None:
    """The normalised LLM fields of a span, or None when the span is not an LLM call."""
    tags = span.get("tags")
    if not tags:
        return None
    typed = (span.get("otel") or {}).get("attributes") or {}
    if _MODEL_KEYS.isdisjoint(tags) and (not typed or _MODEL_KEYS.isdisjoint(typed)):
        return None  # the common case, decided in one set operation
    values = _Values(typed, tags)
    for key, kinds in _NOT_MODEL_CALLS.items():
        if _text(values.get(key)) in kinds:
            return None
    usage = _json_object(values.get(_LANGFUSE_USAGE_DETAILS))
    langfuse_model = values.get(_LANGFUSE_MODEL)

    provider = _text(values.first(PROVIDER))
    request_model = _text(values.first(REQUEST_MODEL)) or _text(langfuse_model)
    response_model = _text(values.first(RESPONSE_MODEL)) or _text(langfuse_model)
    input_tokens = _tokens(values, INPUT_TOKENS, usage, "input")
    output_tokens = _tokens(values, OUTPUT_TOKENS, usage, "output")
    has_usage = input_tokens is not None or output_tokens is not None
    if not (provider or request_model or response_model) or not (has_usage or values.first(OPERATION)):
        return None

    cache_read = _tokens(values, CACHE_READ_TOKENS, usage, "cache_read")
    cache_write = _tokens(values, CACHE_WRITE_TOKENS, usage, "cache_write")
    reported = _float(values.first(REPORTED_COST))
    if reported is None:
        reported = _langfuse_cost(values.get(_LANGFUSE_COST_DETAILS))
    cost = pricer.cost(
        reported=reported,
        provider=provider,
        models=(response_model, request_model),
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
        timestamp_us=span.get("timestamp"),
    )
    return {
        "provider": provider,
        "request_model": request_model,
        "response_model": response_model,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_read_tokens": cache_read,
        "cache_write_tokens": cache_write,
        "reasoning_tokens": _tokens(values, REASONING_TOKENS, usage, "reasoning"),
        "finish_reasons": _list(values.first(FINISH_REASONS)),
        "ttft_us": _ttft_us(values, span.get("timestamp")),
        "conversation_id": _text(values.first(CONVERSATION)),
        "cost_usd": cost.usd if cost else None,
        "cost_source": cost.source if cost else None,
        "price_version": cost.price_version if cost else None,
    }


class _Values:
    """Attribute lookup: the typed OTLP value when there is one, else the Zipkin tag text; an empty
    value is no value. The span's attributes are narrowed to those read here once, so that each of
    the ~20 lookups of an LLM call probes one small dict instead of two of the span's."""

    __slots__ = ("found",)

    def __init__(self, typed: dict[str, Any], tags: dict[str, str]) -> None:
        found: dict[str, Any] = {key: tags[key] for key in _READ.intersection(tags)}
        if typed:
            found.update(
                {key: value for key in _READ.intersection(typed) if (value := typed[key]) is not None}
            )
        self.found = found

    def get(self, key: str) -> Any:
        """The value of one attribute (one of ``_READ``)."""
        value = self.found.get(key)
        return None if value == "" else value

    def first(self, keys: tuple[str, ...]) -> Any:
        """The value of the first of ``keys`` (each one of ``_READ``) that has one."""
        found = self.found
        for key in keys:
            value = found.get(key)
            if value is not None and value != "":
                return value
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _int(value: Any) -> int | None:
    if type(value) is int:
        return value
    number = _float(value)
    return int(number) if number is not None else None


def _float(value: Any) -> float | None:
    """A finite number from a typed value or its text; None for anything else."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _list(value: Any) -> list[str]:
    """A string array, its JSON text, a comma list or one value: the same list of strings."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = orjson.loads(text)
            except orjson.JSONDecodeError:
                value = text.strip("[]").split(",")
        else:
            value = text.split(",")
    if not isinstance(value, list):
        return []
    return [item for item in (str(v).strip().strip("\"'") for v in value) if item]


def _json_object(value: Any) -> dict[str, Any] | None:
    if isinstance(value, dict):
        return value
    if isinstance(value, str):
        try:
            parsed = orjson.loads(value)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return None


def _tokens(values: _Values, keys: tuple[str, ...], usage: dict[str, Any] | None, field: str) -> int | None:
    """A token count from the attributes, else from Langfuse's usage_details; 0 is a count."""
    count = _int(values.first(keys))
    return count if count is not None else _usage(usage, field)


def _usage(details: dict[str, Any] | None, field: str) -> int | None:
    if details:
        for key in _LANGFUSE_USAGE[field]:
            count = _int(details.get(key))
            if count is not None:
                return count
    return None


def _langfuse_cost(value: Any) -> float | None:
    details = _json_object(value)
    if not details:
        return None
    total = _float(details.get("total"))
    if total is not None:
        return total
    parts = [_float(v) for v in details.values()]
    return sum(p for p in parts if p is not None) if any(p is not None for p in parts) else None


def _ttft_us(values: _Values, start_us: int | None) -> int | None:
    seconds = _float(values.first(TTFT_SECONDS))
    if seconds is not None:
        return round(seconds * 1_000_000)
    started = values.get(_LANGFUSE_COMPLETION_START)
    if isinstance(started, str) and start_us:
        try:
            first_token = datetime.fromisoformat(started.strip('"').replace("Z", "+00:00"))
        except ValueError:
            return None
        if first_token.tzinfo is None:
            first_token = first_token.replace(tzinfo=UTC)
        return max(0, round(first_token.timestamp() * 1_000_000) - start_us)
    return None
