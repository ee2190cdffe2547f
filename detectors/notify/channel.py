"""The one interface every channel implements, and what it renders: a group of alerts for a receiver.

A channel only turns a group into bytes and headers; the outbox stores them before anything is sent,
and one shared HTTP sender delivers them, so retry, signing and timeouts are the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from .alert import FIRING, RESOLVED, Alert


@dataclass(frozen=True)
class Group:
    receiver: str
    key: str  # stable id of the aggregation group, e.g. {}/{kind="latency"}:{service="cart"}
    labels: dict[str, str]  # the group-by labels and their values
    alerts: tuple[Alert, ...]
    external_url: str

    @property
    def status(self) -> str:
        return FIRING if any(a.firing for a in self.alerts) else RESOLVED

    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])


@dataclass(frozen=True)
class Rendered:
    body: bytes
    headers: dict[str, str]


class Channel(Protocol):
    def render(self, group: Group) -> Rendered: ...


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    first, *rest = maps
    return {k: v for k, v in first.items() if all(m.get(k) == v for m in rest)}
