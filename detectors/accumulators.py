"""Per-window, per-operation tallies filled on the hot path; everything else happens at window close."""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from sys import intern
from typing import Any

#: Durations an operation's window keeps at most: a uniform sample beyond it (Vitter's algorithm R).
#: At live rates a ten-second window sees hundreds of thousands of spans; kept whole, their
#: durations took the engine's process from ~100 to ~150 MB at 450k spans. A sample of 4,096 puts the median and p90
#: within ~1 % of the whole window's (one standard error, at the spread of typical latencies).
DURATION_SAMPLE = 4096


class OpWindow:
    __slots__ = ("count", "durations", "error_traces", "errors", "slowest", "slowest_trace", "timed")

    def __init__(self) -> None:
        self.durations = array("q")  # a uniform sample of ``timed`` durations
        self.timed = 0  # spans with a duration
        self.count = 0
        self.errors = 0
        self.slowest = 0
        self.slowest_trace = ""
        self.error_traces: list[str] = []

    def add_duration(self, duration: int, span_id: str) -> None:
        """File a duration in the sample. The slot a late value may take comes from the span id's
        random bits, so a replay samples exactly as the first pass did."""
        self.timed += 1
        durations = self.durations
        if len(durations) < DURATION_SAMPLE:
            durations.append(duration)
        else:
            slot = int(span_id[-8:], 16) % self.timed
            if slot < DURATION_SAMPLE:
                durations[slot] = duration


@dataclass(slots=True)
class LlmCall:
    """One LLM call as the token and finish-reason detectors need it. A window holds every call
    until it closes, tens of thousands at live rates: names are interned and lists are tuples."""

    service: str
    name: str
    route: str | None
    trace_id: str
    model: str
    input_tokens: int
    cost_usd: float | None
    finish_reasons: tuple[str, ...]
    principals: tuple[str, ...] = ()  # "user.id=..." / "tenant.id=..."

    def __reduce__(self) -> tuple:
        # A plain tuple of fields: by default each call pickled through a dict of its slots, which
        # the pickler's memo keeps alive until the snapshot is done (+19 MB at 36k open calls).
        return (
            LlmCall,
            (
                self.service,
                self.name,
                self.route,
                self.trace_id,
                self.model,
                self.input_tokens,
                self.cost_usd,
                self.finish_reasons,
                self.principals,
            ),
        )


#: An LLM call as the engine is fed it, beside its span: (model, input tokens, cost in USD or None,
#: finish reasons, principals ("user.id=..." / "tenant.id=...")); ``llm_input`` makes one.
LlmInput = tuple[str, int, float | None, tuple[str, ...], tuple[str, ...]]


def llm_input(
    request_model: str | None,
    response_model: str | None,
    input_tokens: int | None,
    cost_usd: float | None,
    finish_reasons: Iterable[Any],
    user: str | None,
    tenant: str | None,
) -> LlmInput:
    """The fields of ``extract_llm``'s answer (or of its stored row) that the detectors use."""
    principals = tuple(f"{tag}={value}" for tag, value in (("user.id", user), ("tenant.id", tenant)) if value)
    return (
        intern(response_model or request_model or "unknown"),
        int(input_tokens or 0),
        cost_usd,
        tuple(intern(str(reason)) for reason in finish_reasons),
        principals,
    )
