"""The numbers behind an alert as short, human text: "expected 120 ms, observed 480 ms".

The engine's ``expected``/``observed`` dicts differ per kind and may grow; the unit is read from the
key's name (``...Us`` durations, ``...Ratio`` shares, ``...Usd`` money, ``mix`` distributions), so a
new key renders sensibly without a change here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Evidence:
    name: str
    expected: str | None
    observed: str | None

    def __str__(self) -> str:
        parts = [
            f"expected {self.expected}" if self.expected is not None else "",
            f"observed {self.observed}" if self.observed is not None else "",
        ]
        return f"{self.name}: " + ", ".join(p for p in parts if p)


def evidence(expected: Any, observed: Any) -> list[Evidence]:
    """One row per key of ``expected`` and ``observed``, in their order, expected's first."""
    expected = expected if isinstance(expected, dict) else {}
    observed = observed if isinstance(observed, dict) else {}
    rows = []
    for key in dict.fromkeys([*expected, *observed]):
        rows.append(
            Evidence(
                _name(key),
                fmt(key, expected[key]) if key in expected else None,
                fmt(key, observed[key]) if key in observed else None,
            )
        )
    return rows


def headline(expected: Any, observed: Any) -> Evidence | None:
    """The first row that has both sides: the number a title should carry."""
    return next((e for e in evidence(expected, observed) if e.expected and e.observed), None)


def fmt(key: str, value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    if isinstance(value, dict):
        return _mix(value) if key == "mix" else ", ".join(f"{k}={fmt(k, v)}" for k, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(fmt(key, v) for v in value)
    if not isinstance(value, int | float):
        return str(value)
    if key.endswith("Us"):
        return duration(value)
    if "Ratio" in key or key.endswith("ratio"):
        return f"{value * 100:.3g}%"
    if key.lower().endswith("usd") or "cost" in key.lower() or key.lower().startswith("spend"):
        return f"${value:,.4g}" if abs(value) < 1000 else f"${value:,.0f}"
    if key == "pValue":
        return f"{value:.2g}"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:,.0f}"


def duration(us: float) -> str:
    if abs(us) < 1_000:
        return f"{us:.0f} µs"
    if abs(us) < 1_000_000:
        return f"{us / 1_000:.3g} ms"
    return f"{us / 1_000_000:.3g} s"


def _mix(shares: dict) -> str:
    top = sorted(shares.items(), key=lambda kv: -kv[1] if isinstance(kv[1], int | float) else 0)[:3]
    return ", ".join(f"{k} {v * 100:.0f}%" if isinstance(v, int | float) else f"{k} {v}" for k, v in top)


def _name(key: str) -> str:
    if key.endswith("Us") and len(key) > 2:
        key = key[:-2]
    return _CAMEL.sub(" ", key).lower()
