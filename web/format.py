"""Turning numbers into the short text the pages show, and reading the UI's own query values.

Durations in the UI's query string may carry a unit (``250ms``, ``2s``, ``1.5m``); a bare number is
microseconds, as in Zipkin's API, so links copied from Zipkin keep working.
"""

from __future__ import annotations

import re
import zlib
from datetime import UTC, datetime

_UNITS_US = {"us": 1, "µs": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000}
_UNITS_US["d"] = 24 * _UNITS_US["h"]
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|µs|ms|s|m|h|d)?\s*$", re.IGNORECASE)

#: Lookback presets offered by the search and dependency forms, in milliseconds.
LOOKBACKS = (
    ("15m", "Last 15 minutes"),
    ("1h", "Last hour"),
    ("6h", "Last 6 hours"),
    ("12h", "Last 12 hours"),
    ("1d", "Last day"),
    ("2d", "Last 2 days"),
    ("7d", "Last 7 days"),
)

#: The service palette has this many colours (CSS classes ``c0`` .. ``c11``).
PALETTE = 12

#: Shown for a missing value (an en dash).
NONE = "\u2013"


class ParamError(ValueError):
    """A query-string value the UI cannot read; the message is shown on a 400 page."""


def parse_duration_us(text: str, name: str, default_unit: str = "us") -> int:
    """``250ms`` → 250000; a bare number is in ``default_unit``. Raises ParamError."""
    match = _DURATION.match(text)
    if not match:
        raise ParamError(f"{name}: {text[:40]!r} is not a duration; write e.g. 250ms, 2s or 1.5m")
    unit = (match[2] or default_unit).lower()
    value = float(match[1]) * _UNITS_US[unit]
    if value >= 2**62:
        raise ParamError(f"{name} is too large")
    return round(value)


def parse_lookback_ms(text: str) -> int:
    """A lookback preset (``1h``) or milliseconds (Zipkin's unit)."""
    us = parse_duration_us(text, "lookback", default_unit="ms")
    if us < 1000:
        raise ParamError("lookback must be at least 1ms")
    return us // 1000


def parse_end_ts_ms(text: str) -> int:
    """Epoch milliseconds, or an ISO date-time (UTC unless it says otherwise)."""
    text = text.strip()
    if text.isdigit():
        value = int(text)
        if not 0 < value < 2**53:
            raise ParamError("endTs is out of range")
        return value
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ParamError(f"endTs: {text[:40]!r} is neither epoch milliseconds nor a date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def duration(us: int | float | None) -> str:
    """Microseconds as Zipkin Lens shows them: ``850µs``, ``12.3ms``, ``1.25s``, ``2m 5s``."""
    if us is None:
        return NONE
    us = float(us)
    if us < 1000:
        return f"{us:.0f}µs"
    if us < 1_000_000:
        ms = us / 1000
        return f"{ms:.3g}ms" if ms < 100 else f"{ms:.0f}ms"
    if us < 60_000_000:
        return f"{us / 1e6:.3g}s"
    minutes, seconds = divmod(int(us // 1_000_000), 60)
    return f"{minutes}m {seconds}s"


def short_duration_text(us: int) -> str:
    """The inverse of ``parse_duration_us`` for form fields: 250000 → ``250ms``."""
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS_US[unit]
        if us >= size and us % size == 0:
            return f"{us // size}{unit}"
    return f"{us}us"


def timestamp(us: int | None) -> str:
    """Epoch microseconds as a UTC date-time to the millisecond."""
    if not us:
        return NONE
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def clock(us: int | None) -> str:
    if not us:
        return NONE
    return datetime.fromtimestamp(us / 1e6, UTC).strftime("%H:%M:%S")


def usd(value: float | None) -> str:
    if value is None:
        return NONE
    if value == 0:
        return "$0"
    if value < 0.0001:
        return f"${value:.2g}"
    if value < 0.01:
        return f"${value:.4f}"
    if value < 100:
        return f"${value:.2f}"
    return f"${value:,.0f}"


def count(value: int | None) -> str:
    return NONE if value is None else f"{value:,}"


def color(service: str | None) -> int:
    """A stable palette index per service name."""
    return zlib.crc32((service or "").encode()) % PALETTE


def register(env) -> None:
    env.filters.update(duration=duration, ts=timestamp, clock=clock, usd=usd, count=count, color=color)
