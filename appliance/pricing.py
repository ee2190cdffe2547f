"""What an LLM call cost, in USD.

A cost the instrumentation reported wins. Otherwise an operator's per-model override (from the
config file) wins over the ``genai-prices`` table. The table is the one bundled in the package:
``genai_prices`` only fetches prices when its ``UpdatePrices`` helper is started, which we never do,
so pricing never touches the network. Token counts follow the OpenTelemetry GenAI convention (and
genai-prices'): input tokens include the cache reads and writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from importlib.metadata import version
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from genai_prices.types import ModelInfo, ModelPrice, Provider

# genai_prices itself (pydantic, ~20 MB) is imported on the first table lookup: a process that
# never prices a call (the server, when ingest workers do it) never loads it.
TABLE_VERSION = f"genai-prices {version('genai-prices')}"
OVERRIDE_VERSION = "override"
_OVERRIDE_KEYS = frozenset(
    ("input_per_mtok", "output_per_mtok", "cache_read_per_mtok", "cache_write_per_mtok")
)


@dataclass(frozen=True, slots=True)
class Cost:
    usd: float
    source: str  # 'reported' | 'computed'
    price_version: str | None


@dataclass(frozen=True, slots=True)
class _Override:
    input: float
    output: float
    cache_read: float
    cache_write: float


class Pricer:
    """Prices LLM calls; ``overrides`` maps a model name to per-million-token prices. Without
    ``table`` only reported costs and overrides count (the genai-prices table is never loaded)."""

    def __init__(
        self, overrides: Mapping[str, Mapping[str, float]] | None = None, *, table: bool = True
    ) -> None:
        self._overrides = {
            model.lower(): _override(model, prices) for model, prices in (overrides or {}).items()
        }
        self._table = table

    def cost(
        self,
        *,
        reported: float | None,
        provider: str | None,
        models: tuple[str | None, ...],
        input_tokens: int | None,
        output_tokens: int | None,
        cache_read_tokens: int | None,
        cache_write_tokens: int | None,
        timestamp_us: int | None,
    ) -> Cost | None:
        """``models`` in order of preference (the response model, then the requested one)."""
        if reported is not None:
            return Cost(reported, "reported", None)
        if input_tokens is None and output_tokens is None:
            return None
        tokens = (input_tokens or 0, output_tokens or 0, cache_read_tokens or 0, cache_write_tokens or 0)
        for model in filter(None, models):
            override = self._overrides.get(model.lower())
            if override is not None:
                return Cost(_override_cost(override, *tokens), "computed", OVERRIDE_VERSION)
        if not self._table:
            return None
        for model in filter(None, models):
            found = _lookup(provider.lower() if provider else None, model)
            if found is not None:
                at = datetime.fromtimestamp(timestamp_us / 1e6, UTC) if timestamp_us else None
                return Cost(_table_cost(*found, *tokens, at), "computed", TABLE_VERSION)
        return None


def _override(model: str, prices: Mapping[str, float]) -> _Override:
    unknown = set(prices) - _OVERRIDE_KEYS
    if unknown or "input_per_mtok" not in prices or "output_per_mtok" not in prices:
        raise ValueError(
            f"price override for {model!r} needs input_per_mtok and output_per_mtok"
            f" (optional: cache_read_per_mtok, cache_write_per_mtok); got {sorted(prices)}"
        )
    input_price = float(prices["input_per_mtok"])
    return _Override(
        input=input_price,
        output=float(prices["output_per_mtok"]),
        cache_read=float(prices.get("cache_read_per_mtok", input_price)),
        cache_write=float(prices.get("cache_write_per_mtok", input_price)),
    )


def _override_cost(
    prices: _Override, input_tokens: int, output_tokens: int, cache_read: int, cache_write: int
) -> float:
    uncached = max(0, input_tokens - cache_read - cache_write)
    return (
        uncached * prices.input
        + cache_read * prices.cache_read
        + cache_write * prices.cache_write
        + output_tokens * prices.output
    ) / 1_000_000


@lru_cache(maxsize=4096)
def _lookup(provider: str | None, model: str) -> tuple[Provider, ModelInfo] | None:
    """The table's entry for a model, trying the named provider first; misses are cached too."""
    from genai_prices import data_snapshot

    snapshot = data_snapshot.get_snapshot()
    for provider_id in (provider, None) if provider else (None,):
        try:
            return snapshot.find_provider_model(model, None, provider_id, None)
        except LookupError:
            continue
    return None


def _table_cost(
    provider: Provider,
    model: ModelInfo,
    input_tokens: int,
    output_tokens: int,
    cache_read: int,
    cache_write: int,
    at: datetime | None,
) -> float:
    linear = _linear(_prices_at(model, at or datetime.now(tz=UTC))) if provider.id != "groq" else None
    if linear is not None and input_tokens >= cache_read + cache_write:
        base, per_input, per_output, per_cache_read, per_cache_write = linear
        total = (
            base
            + (
                per_input * input_tokens
                + per_output * output_tokens
                + per_cache_read * cache_read
                + per_cache_write * cache_write
            )
            / _MTOK
        )
        return float(total)
    import genai_prices

    usage = genai_prices.Usage(
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
    return float(model.calc_price(usage, provider, genai_request_timestamp=at).total_price)


_MTOK = Decimal(1_000_000)
_PRICES_AT: dict[tuple[int, int], tuple[ModelInfo, ModelPrice]] = {}


def _prices_at(model: ModelInfo, at: datetime) -> ModelPrice:
    """The model's price entry in force at ``at``; constraints (start dates, time-of-day windows)
    change on whole minutes, so the entry is looked up once per model and minute."""
    key = (id(model), int(at.timestamp()) // 60)
    cached = _PRICES_AT.get(key)
    if cached is not None and cached[0] is model:
        return cached[1]
    prices = model.get_prices(at.replace(second=0, microsecond=0))
    if len(_PRICES_AT) > 65_536:
        _PRICES_AT.clear()
    _PRICES_AT[key] = (model, prices)
    return prices


#: Per-million-token coefficients of each price table entry in force (the entry changes with
#: time-of-day pricing; the object identity is the cache key, the entry itself kept alive here).
_LINEAR: dict[int, tuple[ModelPrice, tuple[Decimal, ...] | None]] = {}


def _linear(prices: ModelPrice) -> tuple[Decimal, ...] | None:
    """(base, input, output, cache read, cache write) per million tokens when the price is linear
    in the token counts (no tiers), read off genai-prices' own calculation; None otherwise.

    genai-prices spends ~100 µs per call; this makes a priced LLM span cost a few µs, with the
    same Decimal sums and so the same result.
    """
    cached = _LINEAR.get(id(prices))
    if cached is not None and cached[0] is prices:
        return cached[1]
    import genai_prices
    from genai_prices.types import TieredPrices

    coefficients: tuple[Decimal, ...] | None = None
    if not any(isinstance(value, TieredPrices) for value in vars(prices).values()):
        try:

            def total(i: int, o: int, r: int, w: int) -> Decimal:
                usage = genai_prices.Usage(
                    input_tokens=i, output_tokens=o, cache_read_tokens=r, cache_write_tokens=w
                )
                return prices.calc_price(usage)["total_price"]

            m = 1_000_000
            base = total(0, 0, 0, 0)
            per_input = total(m, 0, 0, 0) - base
            coefficients = (
                base,
                per_input,
                total(0, m, 0, 0) - base,
                total(m, 0, m, 0) - base - per_input,
                total(m, 0, 0, m) - base - per_input,
            )
        except Exception:  # a unit this shortcut does not model: keep the full calculation
            coefficients = None
    if len(_LINEAR) > 4096:
        _LINEAR.clear()
    _LINEAR[id(prices)] = (prices, coefficients)
    return coefficients
