"""Per-window, per-operation tallies filled on the hot path; everything else happens at window close."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class OpWindow:
    __slots__ = ("count", "durations", "error_traces", "errors", "slowest", "slowest_trace")

    def __init__(self) -> None:
        self.durations: list[int] = []
        self.count = 0
        self.errors = 0
        self.slowest = 0
        self.slowest_trace = ""
        self.error_traces: list[str] = []


@dataclass(slots=True)
class LlmCall:
    """One LLM call as the token and finish-reason detectors need it."""

    service: str
    name: str
    route: str | None
    trace_id: str
    model: str
    input_tokens: int
    cost_usd: float | None
    finish_reasons: list[str]
    principals: list[str] = field(default_factory=list)  # "user.id=..." / "tenant.id=..."

    @classmethod
    def from_span(cls, span: dict[str, Any], service: str, llm: dict[str, Any]) -> LlmCall:
        tags = span.get("tags") or {}
        principals = [f"{tag}={tags[tag]}" for tag in ("user.id", "tenant.id") if tags.get(tag)]
        return cls(
            service=service,
            name=span.get("name", "unknown"),
            route=None,
            trace_id=span["traceId"],
            model=llm.get("response_model") or llm.get("request_model") or "unknown",
            input_tokens=int(llm.get("input_tokens") or 0),
            cost_usd=llm.get("cost_usd"),
            finish_reasons=list(llm.get("finish_reasons") or ()),
            principals=principals,
        )
