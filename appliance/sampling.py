"""Zipkin's collector sampler: keep a share of traces decided by the trace id alone.

Every span of a trace gets the same decision, on every tracebox, because it depends only on the
low 64 bits of the trace id; debug spans are always kept.
"""

from __future__ import annotations

from tracebox.appliance.model import Span

_MAX = (1 << 63) - 1


class CollectorSampler:
    def __init__(self, rate: float) -> None:
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"sample rate should be between 0.0 and 1.0, got {rate}")
        self.rate = rate
        self._boundary = int(_MAX * rate)

    def is_sampled(self, trace_id: str, debug: bool = False) -> bool:
        if debug or self.rate >= 1.0:
            return True
        low = int(trace_id[-16:], 16)
        signed = low - (1 << 64) if low > _MAX else low
        magnitude = _MAX if signed == -(1 << 63) else abs(signed)  # as Java's Math.abs would not
        return magnitude <= self._boundary

    def sample(self, spans: list[Span]) -> list[Span]:
        if self.rate >= 1.0:
            return spans
        return [s for s in spans if self.is_sampled(s["traceId"], s.get("debug", False))]
