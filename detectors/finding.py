"""What a detector says about one key after one window."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# A finding's state: ANOMALOUS counts towards firing, NORMAL towards resolving, ELEVATED (between the
# two thresholds, or explained by a dependency) towards neither: that gap is the hysteresis.
ANOMALOUS, ELEVATED, NORMAL = "anomalous", "elevated", "normal"

Node = tuple[str, str, str]  # (service, operation, view): view is server, local or client


@dataclass(slots=True)
class Finding:
    kind: str
    service: str
    operation: str
    state: str
    score: float
    expected: dict[str, Any]
    observed: dict[str, Any]
    trace_ids: list[str] = field(default_factory=list)
    labels: dict[str, Any] = field(default_factory=dict)
    node: Node | None = None  # for blaming a dependency
    excess: float = 0.0  # how far above expected, in the signal's unit, for blaming

    @property
    def key(self) -> tuple[str, ...]:
        """Alerts group by this: one open alert per key."""
        return (
            self.kind,
            self.service,
            self.operation,
            self.labels.get("view", ""),
            self.labels.get("model", ""),
        )


def shift_state(
    z: float, z_fire: float, ratio: float, min_ratio: float, delta: float, min_delta: float
) -> str:
    """A level shift must be significant (z), big relative to the baseline and big in absolute terms
    to fire; it is normal again once any of the three falls to half its bar."""
    if z >= z_fire and ratio >= min_ratio and delta >= min_delta:
        return ANOMALOUS
    if z < z_fire / 2 or ratio < (1 + min_ratio) / 2 or delta < min_delta / 2:
        return NORMAL
    return ELEVATED
