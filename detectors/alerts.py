"""Alert lifecycle: fire after ``fire_after`` anomalous evaluations in a row, one open alert per key
(later anomalies update it), resolve after ``resolve_after`` normal windows in a row."""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from .config import EngineConfig
from .finding import ANOMALOUS, NORMAL, Finding

FIRED, UPDATED, RESOLVED = "fired", "updated", "resolved"
FIRING, RESOLVED_STATUS = "firing", "resolved"


@dataclass(frozen=True, slots=True)
class AlertChange:
    change: str  # fired | updated | resolved
    alert: dict[str, Any]


class _Track:
    __slots__ = ("alert", "calm", "last_bad_end", "streak", "streak_start")

    def __init__(self) -> None:
        self.streak = 0
        self.streak_start = 0
        self.calm = 0
        self.last_bad_end = 0
        self.alert: dict[str, Any] | None = None


class AlertManager:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.tracks: dict[tuple[str, ...], _Track] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"tracks": self.tracks}

    def open_alerts(self) -> list[dict[str, Any]]:
        return [copy.deepcopy(t.alert) for t in self.tracks.values() if t.alert]

    def observe(self, kinds: set[str], start: int, end: int, findings: list[Finding]) -> list[AlertChange]:
        """Apply one closed window [start, end) of findings for ``kinds``; keys of those kinds that
        said nothing (no traffic, muted) count as normal."""
        cfg = self.config
        changes: list[AlertChange] = []
        heard = set()
        for f in findings:
            key = f.key
            heard.add(key)
            track = self.tracks.get(key)
            if f.state == ANOMALOUS:
                if track is None:
                    track = self.tracks[key] = _Track()
                if track.streak == 0:
                    track.streak_start = start
                track.streak += 1
                track.calm = 0
                track.last_bad_end = end
                if track.alert:
                    changes.append(AlertChange(UPDATED, self._update(track.alert, f, end)))
                elif track.streak >= cfg.fire_after.get(f.kind, 1):
                    track.alert = self._open(f, track.streak_start, end)
                    changes.append(AlertChange(FIRED, copy.deepcopy(track.alert)))
            elif track is not None:
                track.streak = 0
                if f.state == NORMAL:
                    changes += self._calm(key, track)
                else:
                    track.calm = 0
                    track.last_bad_end = end
        for key, track in list(self.tracks.items()):
            if key[0] in kinds and key not in heard:
                track.streak = 0
                changes += self._calm(key, track)
        return changes

    def _calm(self, key: tuple[str, ...], track: _Track) -> list[AlertChange]:
        if track.alert is None:
            del self.tracks[key]
            return []
        track.calm += 1
        if track.calm < self.config.resolve_after:
            return []
        alert = track.alert
        alert["status"] = RESOLVED_STATUS
        alert["endedAt"] = track.last_bad_end
        alert["updatedAt"] = track.last_bad_end
        del self.tracks[key]
        return [AlertChange(RESOLVED, alert)]

    def _open(self, f: Finding, started: int, now: int) -> dict[str, Any]:
        key = "|".join(map(str, (*f.key, started)))
        return {
            "id": hashlib.sha1(key.encode()).hexdigest()[:16],
            "kind": f.kind,
            "service": f.service,
            "operation": f.operation,
            "status": FIRING,
            "startedAt": started,
            "endedAt": None,
            "firedAt": now,
            "updatedAt": now,
            "expected": f.expected,
            "observed": f.observed,
            "score": f.score,
            "traceIds": list(dict.fromkeys(f.trace_ids))[: self.config.trace_examples],
            "labels": f.labels,
        }

    def _update(self, alert: dict[str, Any], f: Finding, now: int) -> dict[str, Any]:
        alert["observed"] = f.observed
        alert["score"] = max(alert["score"], f.score)
        alert["updatedAt"] = now
        alert["traceIds"] = list(dict.fromkeys(alert["traceIds"] + f.trace_ids))[: self.config.trace_examples]
        return copy.deepcopy(alert)
