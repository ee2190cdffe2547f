"""Engine configuration: defaults that need no tuning, plus per-service / per-operation overrides.

The config file is TOML; its ``[detectors]`` table arrives here as a plain dict, e.g.::

    window_seconds = 10
    [services.checkout]
    sensitivity = 0.8            # < 1 alerts less, > 1 alerts more
    [services.checkout.operations."get /cart"]
    min_traffic = 50
    [services.batch-jobs]
    mute = true
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class Settings:
    """What can be overridden per service or operation."""

    sensitivity: float = 1.0
    min_traffic: int = 0  # 0: each detector's own default
    mute: bool = False


@dataclass(frozen=True)
class EngineConfig:
    window_seconds: int = 10
    lateness_seconds: int = 5
    # LLM windows close later so the route (the server span an LLM call sits under) can arrive first.
    llm_wait_seconds: int = 15
    baseline_windows: int = 360  # one hour of 10 s windows: follows the daily curve
    min_baseline_windows: int = 30
    max_eval_windows: int = 6  # low-traffic keys pool up to this many windows before judging
    # consecutive anomalous evaluations before an alert fires, per kind: latency medians wander, so
    # they need two; the test-based kinds already demand a very small p-value
    fire_after: dict[str, int] = field(
        default_factory=lambda: {"latency": 2, "error": 1, "token_cost": 2, "finish_reason": 1}
    )
    resolve_after: int = 6  # consecutive normal windows before it resolves
    trace_examples: int = 5
    # latency
    latency_z: float = 6.0
    latency_min_ratio: float = 1.3
    latency_min_delta_us: int = 2_000
    latency_min_traffic: int = 20
    # errors
    error_alpha: float = 1e-7
    error_min_delta: float = 0.05
    error_min_traffic: int = 10
    error_min_errors: int = 3
    # token cost
    token_z: float = 5.0
    token_min_ratio: float = 1.5
    token_min_input_delta: int = 300
    token_min_spend_per_hour: float = 1.0
    token_alpha: float = 1e-7
    token_min_traffic: int = 10
    # finish reasons
    finish_alpha: float = 1e-6
    finish_min_shift: float = 0.1
    finish_min_traffic: int = 20
    overrides: dict[str, Any] = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None) -> EngineConfig:
        raw = dict(raw or {})
        known = {f.name for f in fields(cls)} - {"overrides"}
        unknown = set(raw) - known - {"services"}
        if unknown:
            raise ValueError(f"unknown detector settings: {', '.join(sorted(unknown))}")
        services = raw.pop("services", {}) or {}
        for name, table in services.items():
            _check_settings(f"services.{name}", table, allowed_extra={"operations"})
            for op, op_table in (table.get("operations") or {}).items():
                _check_settings(f"services.{name}.operations.{op}", op_table, allowed_extra=set())
        return cls(**raw, overrides={k.lower(): v for k, v in services.items()})

    def settings(self, service: str, operation: str) -> Settings:
        """Service table first, then the operation's table on top of it."""
        table = self.overrides.get(service)
        if not table:
            return _DEFAULT
        base = replace(_DEFAULT, **{k: v for k, v in table.items() if k != "operations"})
        op_table = (table.get("operations") or {}).get(operation)
        return replace(base, **op_table) if op_table else base


_DEFAULT = Settings()
_SETTING_NAMES = {f.name for f in fields(Settings)}


def _check_settings(where: str, table: Any, allowed_extra: set[str]) -> None:
    if not isinstance(table, dict):
        raise ValueError(f"{where} should be a table")
    unknown = set(table) - _SETTING_NAMES - allowed_extra
    if unknown:
        raise ValueError(f"{where}: unknown settings {', '.join(sorted(unknown))}")
