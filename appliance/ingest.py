"""The one path from a request body to the store, shared by every transport."""

from __future__ import annotations

from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.metrics import Metrics
from tracebox.appliance.prepare import Prepared, PreparePool
from tracebox.appliance.store import Store


class Ingest:
    """Body in, durable rows out: decoding, redaction and sampling (``PreparePool``), counting, write."""

    def __init__(self, store: Store, prepare: PreparePool, metrics: Metrics) -> None:
        self.store = store
        self.prepare = prepare
        self.metrics = metrics

    async def accept(self, wire: str, body: bytes, transport: str) -> Prepared:
        """Store a body's spans; returns after the commit.

        Raises ``DecodeError`` (answer 400/413), ``Overloaded`` or ``StoreUnavailable``.
        """
        try:
            prepared = await self.prepare(wire, body)
        except Overloaded:
            self.metrics.count(transport, messages_dropped=1)
            raise
        self.metrics.count(transport, spans=prepared.received, spans_dropped=prepared.sampled_out)
        if not prepared.batch:
            return prepared
        try:
            await self.store.write_batch(prepared.batch)
        except (Overloaded, StoreUnavailable):
            self.metrics.count(transport, messages_dropped=1, spans_dropped=len(prepared.batch))
            raise
        return prepared
