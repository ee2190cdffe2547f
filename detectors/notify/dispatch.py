"""Aggregation groups and their timers (Alertmanager's dispatcher), as plain state with the time
passed in, so the rules are testable without waiting:

- an alert joins one group per route it matches; a new group flushes ``group_wait`` after its first
  alert, then every ``group_interval``, whether or not it had news;
- a flush hands over every alert in the group at that moment (the latest state of each);
  whether that becomes a notification is the notification log's call (``nflog.needs_update``);
- after a flush, resolved alerts that did not change since are dropped, and an empty group goes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .alert import Alert
from .route import Route, Router


@dataclass
class AggregationGroup:
    route: Route
    key: str
    labels: dict[str, str]
    next_flush: float
    alerts: dict[str, Alert] = field(default_factory=dict)  # by fingerprint


class Dispatcher:
    def __init__(self, router: Router) -> None:
        self.router = router
        self.groups: dict[str, AggregationGroup] = {}  # by route receiver + group key

    def insert(self, alert: Alert, now: float) -> None:
        for route in self.router.match(alert.labels):
            labels = route.group_labels(alert.labels)
            key = route.group_key(labels)
            group = self.groups.get(key)
            if group is None:
                group = self.groups[key] = AggregationGroup(route, key, labels, now + route.timing.group_wait)
            group.alerts[alert.fingerprint] = alert

    def due(self, now: float) -> list[AggregationGroup]:
        return sorted((g for g in self.groups.values() if g.next_flush <= now), key=lambda g: g.next_flush)

    def next_due(self) -> float | None:
        return min((g.next_flush for g in self.groups.values()), default=None)

    def flushed(self, group: AggregationGroup, snapshot: list[Alert], now: float) -> None:
        for alert in snapshot:
            if not alert.firing and group.alerts.get(alert.fingerprint) is alert:
                del group.alerts[alert.fingerprint]
        if group.alerts:
            group.next_flush = now + group.route.timing.group_interval
        else:
            del self.groups[group.key]
