"""What every detector shares: per-key recent windows and a per-key status anyone can read."""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterator
from typing import Any, Generic, TypeVar

from .config import EngineConfig, Settings

K = TypeVar("K", bound=Hashable)
W = TypeVar("W")

# Per-baseline status, exposed so an operation that is not judged says why.
LEARNING, READY, LOW_TRAFFIC, MUTED = "learning", "ready", "insufficient_traffic", "muted"


class Detector(Generic[K, W]):
    kind: str

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.recent: dict[K, deque[W | None]] = {}
        self.status: dict[K, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        del state["config"]  # the config comes from the file at restore, not from the snapshot
        return state

    def windows(self, closed: dict[K, W]) -> Iterator[tuple[K, deque[W | None]]]:
        """Every known key with its recent windows, the one just closed (None if quiet) last."""
        for key in closed:
            if key not in self.recent:
                self.recent[key] = deque(maxlen=self.config.max_eval_windows)
        for key, recent in self.recent.items():
            recent.append(closed.get(key))
            yield key, recent

    def judged(self, key: K, settings: Settings, pool: object | None, learned: bool) -> bool:
        """Record why a key is or is not judged this window; True when it is."""
        if settings.mute:
            status = MUTED
        elif pool is None:
            status = LOW_TRAFFIC
        elif not learned:
            status = LEARNING
        else:
            status = READY
        self.status[key] = status
        return status == READY

    def settings(self, service: str, operation: str) -> Settings:
        return self.config.settings(service, operation)

    def baselines(self) -> list[dict[str, Any]]:
        return [{"kind": self.kind, **self.describe(key), "status": s} for key, s in self.status.items()]

    def describe(self, key: K) -> dict[str, Any]:
        raise NotImplementedError
