"""A tracebox alert as a notification sees it: Alertmanager-style labels and annotations.

Labels identify the series and drive routing, grouping and silences: ``alertname``, ``kind``,
``service``, ``operation``, ``severity`` and the engine's scalar labels (``view``, ``model``,
``reason``...). Everything else (the evidence, links, non-scalar engine labels) goes into
annotations. The fingerprint is the engine's alert id: one per occurrence, so a receiver sees an
alert that fires again after resolving as a new incident.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .evidence import Evidence, evidence, headline

ALERTNAMES = {
    "latency": "LatencyAnomaly",
    "error": "ErrorBurst",
    "token_cost": "TokenCostSpike",
    "finish_reason": "FinishReasonShift",
    "pattern": "TracePatternRise",
}
KIND_TITLES = {
    "latency": "latency",
    "error": "error ratio",
    "token_cost": "token cost",
    "finish_reason": "finish reasons",
    "pattern": "trace pattern",
}
FIRING, RESOLVED = "firing", "resolved"
#: What Alertmanager sends as endsAt of a firing alert (Go's zero time).
ZERO_TIME = "0001-01-01T00:00:00Z"
_CORE = ("alertname", "kind", "service", "operation", "severity")


@dataclass(frozen=True)
class Alert:
    id: str
    status: str
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at_us: int
    ends_at_us: int | None
    score: float
    summary: str
    evidence: tuple[Evidence, ...]
    url: str
    trace_urls: tuple[str, ...]

    @property
    def firing(self) -> bool:
        return self.status == FIRING

    @property
    def fingerprint(self) -> str:
        return self.id

    @classmethod
    def from_engine(cls, alert: Mapping[str, Any], public_url: str, critical_score: float) -> Alert:
        base = public_url.rstrip("/")
        kind, service, operation = (
            str(alert["kind"]),
            str(alert["service"]),
            str(alert.get("operation") or ""),
        )
        score = float(alert.get("score") or 0.0)
        extra = alert.get("labels") or {}
        labels = {k: _label(v) for k, v in extra.items() if _is_scalar(v) and k not in _CORE}
        labels |= {
            "alertname": ALERTNAMES.get(kind, "TraceboxAnomaly"),
            "kind": kind,
            "service": service,
            "operation": operation,
            "severity": _label(extra.get("severity"))
            or ("critical" if score >= critical_score else "warning"),
        }
        rows = tuple(evidence(alert.get("expected"), alert.get("observed")))
        url = f"{base}/alerts/{alert['id']}"
        trace_ids = [str(t) for t in alert.get("traceIds") or ()]
        trace_urls = tuple(f"{base}/traces/{t}" for t in trace_ids)
        summary = _summary(kind, service, operation, headline(alert.get("expected"), alert.get("observed")))
        annotations = {
            "summary": summary,
            "description": "\n".join(map(str, rows)),
            "expected": _json(alert.get("expected")),
            "observed": _json(alert.get("observed")),
            "score": f"{score:g}",
            "alertId": str(alert["id"]),
            "alertURL": url,
            "traceIds": ",".join(trace_ids),
            "traceURLs": "\n".join(trace_urls),
        }
        if trace_urls:
            annotations["exampleTraceURL"] = trace_urls[0]
        annotations |= {k: _json(v) for k, v in extra.items() if not _is_scalar(v) and v is not None}
        status = RESOLVED if alert.get("status") == RESOLVED else FIRING
        ended = alert.get("endedAt")
        return cls(
            id=str(alert["id"]),
            status=status,
            labels=dict(sorted(labels.items())),
            annotations=annotations,
            starts_at_us=int(alert["startedAt"]),
            ends_at_us=int(ended) if ended is not None and status == RESOLVED else None,
            score=score,
            summary=summary,
            evidence=rows,
            url=url,
            trace_urls=trace_urls,
        )


def rfc3339(us: int | None) -> str:
    if us is None:
        return ZERO_TIME
    return datetime.fromtimestamp(us / 1e6, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _summary(kind: str, service: str, operation: str, lead: Evidence | None) -> str:
    where = f"{service} {operation}".strip()
    text = f"{where}: {KIND_TITLES.get(kind, kind)} anomaly"
    if lead is not None:
        text += f", {lead.name} {lead.observed} (expected {lead.expected})"
    return text


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _label(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)
