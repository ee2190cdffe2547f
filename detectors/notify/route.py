"""Which receivers an alert goes to, and how its notifications are grouped and paced.

The rules, after Alertmanager's routing tree flattened to one level:

- routes are tried in order; an alert takes the first route whose matchers all match, and keeps
  going down the list only past routes with ``continue = true``;
- an alert no route takes goes to the default receivers (by default every receiver);
- a route groups alerts by the values of its ``group_by`` labels (``["..."]``: all labels, so
  every alert is its own group); each group is one stream of notifications with its own timers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .matchers import Matcher, all_match

ALL_LABELS = "..."


@dataclass(frozen=True)
class Timing:
    group_wait: float = 30.0  # seconds from a group's first alert to its first notification
    group_interval: float = 300.0  # between notifications about changes to a group
    repeat_interval: float = 4 * 3600.0  # before notifying again about an unchanged firing group


@dataclass(frozen=True)
class Route:
    id: str  # part of every group key: routes[0], default:ops
    receiver: str
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] = ("kind", "service")
    timing: Timing = Timing()
    continue_: bool = False

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        if ALL_LABELS in self.group_by:
            return dict(labels)
        return {name: labels.get(name, "") for name in self.group_by}

    def group_key(self, group_labels: Mapping[str, str]) -> str:
        matchers = ",".join(str(m) for m in self.matchers)
        values = ",".join(f'{k}="{v}"' for k, v in sorted(group_labels.items()))
        return f"{{{self.id}}}/{{{matchers}}}:{{{values}}}"


@dataclass(frozen=True)
class Router:
    routes: tuple[Route, ...]
    defaults: tuple[Route, ...]

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        taken = []
        for route in self.routes:
            if all_match(route.matchers, labels):
                taken.append(route)
                if not route.continue_:
                    break
        return taken or list(self.defaults)
