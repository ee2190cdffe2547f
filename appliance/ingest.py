"""The one path from decoded spans to the store, shared by every transport."""

from __future__ import annotations

from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.metrics import Metrics
from tracebox.appliance.model import Span
from tracebox.appliance.redaction import Redactor
from tracebox.appliance.sampling import CollectorSampler
from tracebox.appliance.store import Store


class Ingest:
    """The one path from decoded spans to the store: redaction, sampling, counting, durable write."""

    def __init__(
        self, store: Store, sampler: CollectorSampler, metrics: Metrics, redact: Redactor | None = None
    ) -> None:
        self.store = store
        self.sampler = sampler
        self.metrics = metrics
        self.redact = redact

    async def accept(self, spans: list[Span], transport: str) -> None:
        """Store spans; returns after the commit. Raises ``Overloaded`` or ``StoreUnavailable``."""
        if self.redact is not None:
            spans = self.redact(spans)
        kept = self.sampler.sample(spans)
        self.metrics.count(transport, spans=len(spans), spans_dropped=len(spans) - len(kept))
        if not kept:
            return
        try:
            await self.store.write_spans(kept)
        except (Overloaded, StoreUnavailable):
            self.metrics.count(transport, messages_dropped=1, spans_dropped=len(kept))
            raise
