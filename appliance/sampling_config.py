"""The ``[sampling]`` table of the config file: tail-based keep policies and adaptive SDK sampling.

Off by default: without ``enabled = true`` every trace is kept, as before, and without a
``[sampling.adaptive]`` table the Jaeger remote-sampling endpoint serves one fixed probability.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from tracebox.appliance.config import ConfigError


@dataclass(frozen=True)
class AttributeRule:
    """``key=value`` (exact), or ``key`` alone (the tag is present with any value)."""

    key: str
    value: str | None

    @classmethod
    def parse(cls, text: str) -> AttributeRule:
        if not isinstance(text, str) or not text.strip():
            raise ConfigError(f"sampling.attributes entries should be 'key=value' or 'key', got {text!r}")
        key, sep, value = text.partition("=")
        if not key.strip():
            raise ConfigError(f"sampling.attributes entry {text!r} has no key")
        return cls(key.strip(), value.strip() if sep else None)

    def matches(self, tags: dict[str, str]) -> bool:
        found = tags.get(self.key)
        return found is not None and (self.value is None or found == self.value)

    def __str__(self) -> str:
        return self.key if self.value is None else f"{self.key}={self.value}"


@dataclass(frozen=True)
class AdaptiveConfig:
    enabled: bool = False
    target_traces_per_second: float = 1.0  # per service and operation
    default_probability: float = 1.0  # for operations not seen yet (and every one when not adaptive)
    min_probability: float = 0.0001
    lower_bound_traces_per_second: float = 1 / 60
    recompute_seconds: float = 30.0
    max_operations: int = 500  # per service, busiest first


@dataclass(frozen=True)
class SamplingConfig:
    enabled: bool = False
    rate: float = 0.1  # share of the other traces kept, by trace id (the Zipkin sampler's hash)
    quiet_seconds: float = 30.0  # a trace is complete after this long without a new span
    max_trace_age_seconds: float = 300.0  # ... or this long after its first span
    evaluation_interval_seconds: float = 5.0
    keep_errors: bool = True
    slow_ms: float = 0.0  # keep traces whose root took longer (0: off)
    slow_quantile: float = 0.99  # keep traces slower than their root operation's learned quantile (0: off)
    min_samples: int = 100  # traces of an operation before its quantile is trusted
    attributes: tuple[AttributeRule, ...] = ()
    keep_alerted: bool = True
    llm_cost_usd: float = 0.0  # keep traces with an LLM call costing more (0: off)
    delete_batch_spans: int = 2000  # spans deleted per write transaction
    adaptive: AdaptiveConfig = field(default_factory=AdaptiveConfig)

    @classmethod
    def from_section(cls, section: dict[str, Any] | None) -> SamplingConfig:
        section = dict(section or {})
        adaptive_section = section.pop("adaptive", None)
        attributes = section.pop("attributes", [])
        if isinstance(attributes, str):
            attributes = [attributes]
        values = _typed(cls, section, "sampling")
        values["attributes"] = tuple(AttributeRule.parse(a) for a in attributes)
        if adaptive_section is not None:
            if not isinstance(adaptive_section, dict):
                raise ConfigError("sampling.adaptive should be a table")
            adaptive = {"enabled": True, **_typed(AdaptiveConfig, adaptive_section, "sampling.adaptive")}
            values["adaptive"] = AdaptiveConfig(**adaptive)
        config = cls(**values)
        config.validate()
        return config

    def validate(self) -> None:
        a = self.adaptive
        checks = (
            (0.0 <= self.rate <= 1.0, "sampling.rate should be between 0.0 and 1.0"),
            (self.quiet_seconds > 0, "sampling.quiet_seconds should be positive"),
            (
                self.max_trace_age_seconds >= self.quiet_seconds,
                "sampling.max_trace_age_seconds < quiet_seconds",
            ),
            (self.evaluation_interval_seconds > 0, "sampling.evaluation_interval_seconds should be positive"),
            (self.slow_ms >= 0 and self.llm_cost_usd >= 0, "sampling thresholds should not be negative"),
            (0.0 <= self.slow_quantile < 1.0, "sampling.slow_quantile should be in [0, 1)"),
            (self.min_samples >= 1 and self.delete_batch_spans >= 1, "sampling counts should be positive"),
            (a.target_traces_per_second > 0, "sampling.adaptive.target_traces_per_second should be positive"),
            (0.0 < a.min_probability <= 1.0, "sampling.adaptive.min_probability should be in (0, 1]"),
            (
                0.0 <= a.default_probability <= 1.0,
                "sampling.adaptive.default_probability should be in [0, 1]",
            ),
            (a.recompute_seconds > 0, "sampling.adaptive.recompute_seconds should be positive"),
        )
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)

    def describe(self) -> dict[str, Any]:
        """The active policies, as ``/api/tracebox/sampling`` shows them."""
        out = asdict(self)
        out["attributes"] = [str(a) for a in self.attributes]
        return out


def _typed(cls: type, section: dict[str, Any], table: str) -> dict[str, Any]:
    known = {f: t for f, t in cls.__dataclass_fields__.items() if f not in ("attributes", "adaptive")}
    unknown = set(section) - set(known)
    if unknown:
        raise ConfigError(f"[{table}] has unknown keys: {', '.join(sorted(unknown))}")
    out: dict[str, Any] = {}
    for name, value in section.items():
        default = known[name].default
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{table}.{name} should be true or false, got {value!r}")
        elif isinstance(default, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{table}.{name} should be a number, got {value!r}")
            value = type(default)(value)
        out[name] = value
    return out
