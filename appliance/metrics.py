"""Collector counters in Zipkin's names, plus tracebox's own gauges, for /prometheus and /metrics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

#: Zipkin's collector series, each labelled by transport (``http``, ``otlp-http``, ``otlp-grpc``).
COUNTERS = {
    "messages": "zipkin_collector_messages_total",
    "messages_dropped": "zipkin_collector_messages_dropped_total",
    "bytes": "zipkin_collector_bytes_total",
    "spans": "zipkin_collector_spans_total",
    "spans_dropped": "zipkin_collector_spans_dropped_total",
}


class Metrics:
    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self.gauges: dict[str, tuple[str, Callable[[], float]]] = {}

    def count(self, transport: str, **amounts: int) -> None:
        for name, amount in amounts.items():
            self._counts[(name, transport)] += amount

    def gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        self.gauges[name] = (help_text, read)

    def snapshot(self) -> dict[str, float]:
        """Flat ``{"zipkin_collector_spans_total{transport=http}": n, ...}`` as /metrics answers."""
        out: dict[str, float] = {}
        for (name, transport), value in sorted(self._counts.items()):
            out[f"{COUNTERS[name]}{{transport={transport}}}"] = value
        for name, (_, read) in self.gauges.items():
            out[name] = read()
        return out

    def prometheus(self) -> str:
        lines: list[str] = []
        for name, series in COUNTERS.items():
            lines.append(f"# TYPE {series} counter")
            transports = sorted({t for (n, t) in self._counts if n == name}) or ["http"]
            for transport in transports:
                lines.append(f'{series}{{transport="{transport}"}} {self._counts.get((name, transport), 0)}')
        for name, (help_text, read) in self.gauges.items():
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
            lines.append(f"{name} {read()}")
        return "\n".join(lines) + "\n"
