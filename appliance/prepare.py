"""Request bodies to store-ready rows: decode, redact, sample, build rows; in worker processes.

Everything between the bytes a transport read and the rows the writer inserts is a pure function
of the body and the settings, and it is most of ingest's Python work. Run in the server's own
process it competes for the GIL with the event loop and the writer; run in worker processes
(``--ingest-processes``, one by default on a machine with two cores or more) it uses another core,
and the server only moves bytes in and rows out (``Prepared.to_wire``: ~1 µs per span to write in
the worker and as much to read in the writer thread; decoding and row building ~12-23 µs).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field

from tracebox.appliance.codecs import otlp
from tracebox.appliance.codecs.zipkin_json import decode_v2
from tracebox.appliance.codecs.zipkin_proto import decode_proto
from tracebox.appliance.codecs.zipkin_v1 import decode_v1
from tracebox.appliance.errors import Overloaded, StoreUnavailable
from tracebox.appliance.llm_rows import llm_row_builder
from tracebox.appliance.model import Span
from tracebox.appliance.redaction import Redactor
from tracebox.appliance.sampling import CollectorSampler
from tracebox.appliance.store.rows import Batch, WireBatch, build_batch
from tracebox.appliance.workers import worker_pool

log = logging.getLogger(__name__)


def _zipkin(decode: Callable[[bytes], list[Span]]) -> Callable[[bytes], otlp.OtlpBatch]:
    return lambda body: otlp.OtlpBatch(decode(body))


#: The wire formats, by the name transports pass (a name, not a function, crosses processes).
DECODERS: dict[str, Callable[[bytes], otlp.OtlpBatch]] = {
    "zipkin-json": _zipkin(decode_v2),
    "zipkin-proto": _zipkin(decode_proto),
    "zipkin-v1-json": _zipkin(decode_v1),
    "otlp-proto": otlp.decode_otlp_protobuf,
    "otlp-json": otlp.decode_otlp_json,
}


@dataclass(slots=True)
class Prepared:
    """One request's outcome: rows to write, and what was received, sampled out and refused."""

    batch: Batch | WireBatch
    received: int = 0
    sampled_out: int = 0
    rejected: int = 0  # OTLP spans refused one by one (partial success)
    error_message: str = ""

    def to_wire(self) -> Wire:
        """This outcome as worker processes send it: the counts, and the rows packed until the writer
        reads them (``WireBatch``); the pool pickles the tuple, copying the rows once."""
        batch = self.batch
        counts = (self.received, self.sampled_out, self.rejected, self.error_message)
        return batch.read().to_wire(), len(batch), *counts

    @classmethod
    def from_wire(cls, wire: Wire) -> Prepared:
        rows, spans, *counts = wire
        return cls(WireBatch(rows, spans), *counts)


#: What ``Prepared.to_wire`` gives: (packed rows, spans, received, sampled out, rejected, message).
Wire = tuple[bytes, int, int, int, int, str]


@dataclass(frozen=True)
class PrepareSettings:
    """What the pipeline needs, in a form that can be sent to a worker process."""

    sample_rate: float = 1.0
    redactor: Redactor | None = None
    autocomplete_keys: frozenset[str] = frozenset()
    prices: Mapping[str, Mapping[str, float]] | None = None


class Preparer:
    """The pipeline itself; a worker process holds one, built once from the settings."""

    def __init__(self, settings: PrepareSettings) -> None:
        self._sampler = CollectorSampler(settings.sample_rate)
        self._redact = settings.redactor
        self._autocomplete = settings.autocomplete_keys
        self._llm_fields = llm_row_builder(settings.prices)

    def __call__(self, wire: str, body: bytes) -> Prepared:
        """Raise ``DecodeError`` (a 400 naming the problem) when the body cannot be read."""
        decoded = DECODERS[wire](body)
        spans = decoded.spans
        batch = self.rows(spans)
        return Prepared(
            batch,
            received=len(spans),
            sampled_out=len(spans) - len(batch),
            rejected=decoded.rejected,
            error_message=decoded.error_message,
        )

    def rows(self, spans: list[Span]) -> Batch:
        """Rows for decoded spans, received or made inside tracebox (self-tracing, the benchmark's
        loader): redacted, sampled, priced and indexed alike (the writer compresses them all)."""
        return build_batch(self._keep(spans), self._autocomplete, self._llm_fields)

    def _keep(self, spans: list[Span]) -> list[Span]:
        if self._redact is not None:
            spans = self._redact(spans)
        return self._sampler.sample(spans)


_worker: Preparer | None = None  # the worker process's pipeline


def _start_worker(settings: PrepareSettings) -> None:
    global _worker
    _worker = Preparer(settings)


def _prepare_in_worker(wire: str, body: bytes) -> Wire:
    assert _worker is not None, "worker started without its settings"
    return _worker(wire, body).to_wire()


#: Requests waiting for or in a worker, per worker, before ingest answers 429: enough to keep the
#: workers busy, few enough that an overload is refused at once rather than queued for seconds.
QUEUED_PER_PROCESS = 8


def default_processes() -> int:
    """One worker beside the server when there is a second core; none (inline) on one core."""
    return 1 if (os.cpu_count() or 1) >= 2 else 0


@dataclass
class PreparePool:
    """Runs the pipeline in ``processes`` worker processes, or inline on the event loop when 0.
    ``local`` is the server process's own pipeline: the inline one, and the one that builds the rows
    of spans tracebox makes itself (``Store.prepare``)."""

    settings: PrepareSettings
    processes: int = field(default_factory=default_processes)
    local: Preparer = field(init=False)
    _pool: Executor | None = None
    _queued: int = 0

    def __post_init__(self) -> None:
        self.local = Preparer(self.settings)
        if self.processes > 0:
            self._pool = self._new_pool()

    def _new_pool(self) -> Executor:
        return worker_pool(self.processes, _start_worker, (self.settings,))

    async def warm_up(self) -> None:
        """Start the workers now (in the background), so the first request does not wait for them."""
        if self._pool is not None:
            for _ in range(self.processes):
                self._pool.submit(_prepare_in_worker, "zipkin-json", b"[]")

    async def __call__(self, wire: str, body: bytes) -> Prepared:
        if self._pool is None:
            return self.local(wire, body)
        if self._queued >= QUEUED_PER_PROCESS * self.processes:
            raise Overloaded(retry_after=1.0)
        self._queued += 1
        try:
            data = await asyncio.get_running_loop().run_in_executor(
                self._pool, _prepare_in_worker, wire, body
            )
            return Prepared.from_wire(data)
        except BrokenProcessPool:
            log.error("an ingest worker process died; starting new ones")
            self._pool.shutdown(wait=False)
            self._pool = self._new_pool()
            raise StoreUnavailable("an ingest worker process died; retry", retry_after=1.0) from None
        finally:
            self._queued -= 1

    async def close(self) -> None:
        """After the last request (aiohttp runs cleanup once handlers are done)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
