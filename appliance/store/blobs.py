"""Span blobs compressed with zstd dictionaries trained on the database's own spans.

A span's stored JSON (~300 bytes) and OTLP extras (~230) repeat the same keys, services, routes
and statements from span to span. Compressed alone such a blob barely shrinks; with a dictionary
trained on a few thousand of the database's spans it shrinks about eightfold, at about a
microsecond a blob either way (``tracebox bench``'s traffic: 291 -> 38 bytes).

Blobs written before the first dictionary stay plain JSON (they start with ``{``). A compressed
blob is a zstd frame that names its dictionary, so a dictionary retrained as traffic grows never
makes an older row unreadable. Readers never see frames: every connection has the SQL function
``span_json(blob)`` (``register``), which queries use wherever they read a blob.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import apsw
import zstandard

from tracebox.appliance.background import repeat
from tracebox.appliance.errors import Overloaded, StoreUnavailable

if TYPE_CHECKING:
    from tracebox.appliance.store import Store

log = logging.getLogger(__name__)

DDL = """
CREATE TABLE blob_dictionaries (
    id INTEGER PRIMARY KEY,          -- the zstd dictionary id its frames carry
    trained_at INTEGER NOT NULL,     -- spans.id of the newest span it was trained on
    created_us INTEGER NOT NULL,
    dictionary BLOB NOT NULL
)
"""

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
#: zstd leaves dictionary ids below 32768 to a public registry.
FIRST_ID = 32_768
LEVEL = 3
DICTIONARY_BYTES = 32_768
#: Spans a dictionary is trained on (both blobs of each): ~0.1 s of training.
SAMPLE_SPANS = 5_000
#: The first dictionary is trained once this many spans are stored; each next one once the store
#: has grown tenfold since the last, so a database carries a handful (~32 KB each) for its life.
FIRST_TRAINING_SPANS = 5_000
GROWTH_TO_RETRAIN = 10
#: How often the trainer checks for enough new spans (one attribute): often, so that few spans are
#: stored plain at the start. The writer's compressor takes a new dictionary at its next batch.
CHECK_S = 0.1


def register(conn: apsw.Connection) -> None:
    """Give ``conn`` the SQL function ``span_json(blob)``: a stored blob as plain JSON."""
    conn.create_scalar_function("span_json", _Expander(conn), 1, deterministic=True)


class _Expander:
    """One connection's ``span_json``, with a decompressor per dictionary it has met."""

    def __init__(self, conn: apsw.Connection) -> None:
        self._conn = conn
        self._decompressors: dict[int, zstandard.ZstdDecompressor] = {}

    def __call__(self, blob: bytes | None) -> bytes | None:
        if blob is None or blob[:4] != ZSTD_MAGIC:
            return blob
        dict_id = zstandard.get_frame_parameters(blob).dict_id
        decompressor = self._decompressors.get(dict_id)
        if decompressor is None:
            decompressor = self._decompressors[dict_id] = zstandard.ZstdDecompressor(
                dict_data=_dictionary(self._conn, dict_id)
            )
        return decompressor.decompress(blob)


def _dictionary(conn: apsw.Connection, dict_id: int) -> zstandard.ZstdCompressionDict:
    row = conn.execute("SELECT dictionary FROM blob_dictionaries WHERE id = ?", (dict_id,)).fetchall()
    if not row:
        raise ValueError(f"a stored span names compression dictionary {dict_id}, which the database lacks")
    return zstandard.ZstdCompressionDict(row[0][0])


class Compressor:
    """The writer's packing of span blobs with the database's newest dictionary.

    It compresses in the writer thread rather than in the ingest workers: the workers are ingest's
    bottleneck and the writer has time to spare (zstd releases the interpreter lock while it works).
    The dictionary is looked up on first use and after ``refresh``, which the trainer calls once a
    new one is committed: only the trainer adds dictionaries.
    """

    def __init__(self) -> None:
        self._dict_id = 0
        self._compress: Callable[[bytes], bytes] | None = None
        self._stale = True

    def refresh(self) -> None:
        """Look for a newer dictionary before the next batch (any thread)."""
        self._stale = True

    def current(self, conn: apsw.Connection) -> Callable[[bytes], bytes] | None:
        """The newest dictionary's compress function; None before the first dictionary."""
        if self._stale:
            self._stale = False  # before the query: a refresh during it is not lost
            newest = conn.execute(
                "SELECT id, dictionary FROM blob_dictionaries WHERE id > ? ORDER BY id DESC LIMIT 1",
                (self._dict_id,),
            ).fetchall()
            if newest:
                self._dict_id, dictionary = newest[0]
                compressor = zstandard.ZstdCompressor(
                    level=LEVEL, dict_data=zstandard.ZstdCompressionDict(dictionary), write_checksum=False
                )
                self._compress = compressor.compress
        return self._compress


def _train(conn: apsw.Connection, newest: int) -> tuple[int, bytes] | None:
    """A dictionary (its id, its bytes) trained on spans spread evenly over those stored since the
    last dictionary, up to ``newest`` (so one huge trace cannot make up the sample); None when
    they are too few or too alike for zstd to build one."""
    since = conn.execute("SELECT coalesce(max(trained_at), 0) FROM blob_dictionaries").fetchall()[0][0]
    step = max(1, (newest - since) // SAMPLE_SPANS)
    ids = list(range(newest, since, -step))[:SAMPLE_SPANS]
    samples = []
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT span_json(json), span_json(otel) FROM spans WHERE id IN ({marks})", chunk
        ):
            samples.extend(blob for blob in row if blob)
    next_id = conn.execute("SELECT coalesce(max(id) + 1, ?) FROM blob_dictionaries", (FIRST_ID,)).fetchall()
    dict_id = next_id[0][0]
    try:
        trained = zstandard.train_dictionary(DICTIONARY_BYTES, samples, dict_id=dict_id, level=LEVEL)
    except zstandard.ZstdError as exc:
        log.info("no compression dictionary from %d spans yet: %s", len(samples), exc)
        return None
    return dict_id, trained.as_bytes()


class Trainer:
    """Trains a dictionary whenever one is due (see ``FIRST_TRAINING_SPANS``), for as long as the
    server runs. A training that zstd refuses is retried once the store has doubled."""

    def __init__(
        self, store: Store, first_at: int = FIRST_TRAINING_SPANS, growth: int = GROWTH_TO_RETRAIN
    ) -> None:
        self._store = store
        self._first_at = first_at
        self._growth = growth
        self._due: int | None = None

    async def run(self, stopping: asyncio.Event) -> None:
        await repeat(self.step, stopping, CHECK_S, "compression dictionary training")

    async def step(self) -> bool:
        """One check; True when it trained a dictionary."""
        try:
            return await self._train_if_due()
        except (Overloaded, StoreUnavailable):
            return False  # busy or disk full: next check

    async def _train_if_due(self) -> bool:
        if self._due is None:
            self._due = await self._store.read(self._training_due)
        newest = self._store.consumer.last_id
        if newest < self._due:
            return False
        trained = await self._store.read(_train, newest)
        if trained is None:
            self._due = newest * 2
            return False
        dict_id, dictionary = trained
        await self._store.write(
            lambda conn: conn.execute(
                "INSERT INTO blob_dictionaries (id, trained_at, created_us, dictionary) VALUES (?, ?, ?, ?)",
                (dict_id, newest, time.time_ns() // 1000, dictionary),
            )
        )
        self._store.consumer.compressor.refresh()
        log.info("trained span compression dictionary %d on spans up to %d", dict_id, newest)
        self._due = newest * self._growth
        return True

    def _training_due(self, conn: apsw.Connection) -> int:
        """The span id at which the next dictionary is due."""
        trained_at = conn.execute("SELECT max(trained_at) FROM blob_dictionaries").fetchall()[0][0]
        return self._first_at if trained_at is None else trained_at * self._growth
