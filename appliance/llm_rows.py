"""The ``llm_calls`` row of a span, from the normalised GenAI fields (``appliance.genai``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import orjson

from tracebox.appliance.genai import extract_llm
from tracebox.appliance.model import Span, local_service
from tracebox.appliance.pricing import Pricer

USER_KEYS = ("user.id", "enduser.id", "langfuse.user.id", "gen_ai.user.id")
TENANT_KEYS = ("tenant.id", "gen_ai.tenant.id", "organization.id")


def llm_row_builder(
    price_overrides: Mapping[str, Mapping[str, float]] | None = None,
) -> Callable[[Span], tuple | None]:
    """A function giving a span's llm_calls columns (span id excluded), or None for other spans."""
    pricer = Pricer(price_overrides)

    def llm_row(span: Span) -> tuple | None:
        llm = extract_llm(span, pricer)
        if llm is None:
            return None
        tags = span.get("tags", {})
        return (
            span["traceId"],
            span.get("timestamp"),
            span.get("duration"),
            local_service(span),
            span.get("name"),
            llm["provider"],
            llm["request_model"],
            llm["response_model"],
            llm["input_tokens"],
            llm["output_tokens"],
            llm["cache_read_tokens"],
            llm["cache_write_tokens"],
            llm["reasoning_tokens"],
            orjson.dumps(llm["finish_reasons"]).decode() if llm["finish_reasons"] else None,
            llm["ttft_us"],
            llm["conversation_id"],
            llm["cost_usd"],
            llm["cost_source"],
            llm["price_version"],
            *caller(tags),
        )

    return llm_row


def caller(tags: Mapping[str, str]) -> tuple[str | None, str | None]:
    """The user and the tenant an LLM call was made for, by the first of the tags that name them."""
    return _first(tags, USER_KEYS), _first(tags, TENANT_KEYS)


def _first(tags: Mapping[str, str], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        value = tags.get(key)
        if value:
            return value
    return None
