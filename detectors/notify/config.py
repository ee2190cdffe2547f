"""Alert delivery configuration, from the ``[alerts]`` section of the config file and the repeatable
``--webhook URL`` / ``--slack-webhook URL`` flags. Receivers (and so webhook URLs) come only from
here, never from the API, so nobody can make tracebox call an address of their choosing.

Durations are numbers of seconds or strings such as ``"500ms"``, ``"30s"``, ``"5m"``, ``"4h"``,
``"7d"``. Unknown keys are errors, so a typo does not silently fall back to a default.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from tracebox.appliance.config import ConfigError

from .matchers import MatcherError, parse_matchers
from .retry import RetryPolicy
from .route import Route, Router, Timing
from .secret import Secret, SecretURL

CHANNELS = ("webhook", "slack")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
_TOP_KEYS = {
    "receivers", "routes", "receiver", "group_by", "group_wait", "group_interval", "repeat_interval",
    "send_resolved", "timeout", "concurrency", "give_up_after", "retry_initial", "retry_max",
    "keep_deliveries", "critical_score",
}  # fmt: skip
_RECEIVER_KEYS = {
    *CHANNELS, "secret", "secret_env", "send_resolved", "max_alerts", "timeout", "concurrency"
}  # fmt: skip
_ROUTE_KEYS = {
    "receiver",
    "matchers",
    "group_by",
    "group_wait",
    "group_interval",
    "repeat_interval",
    "continue",
}


class NotifyConfigError(ConfigError):
    """A setting of ``[alerts]`` tracebox cannot use; the message says which and why."""


@dataclass(frozen=True)
class Receiver:
    name: str
    channel: str  # webhook | slack
    url: SecretURL
    secret: Secret | None = None
    send_resolved: bool = True
    max_alerts: int = 0  # webhook only: alerts per payload, 0 for all
    timeout: float = 10.0  # seconds, for the whole request
    concurrency: int = 4  # groups in flight at once

    def describe(self) -> dict[str, Any]:
        """What the API and the UI may show: no secret, no full URL."""
        return {
            "name": self.name,
            "channel": self.channel,
            "url": self.url.display,
            "signed": self.secret is not None,
            "sendResolved": self.send_resolved,
        }


@dataclass(frozen=True)
class NotifyConfig:
    receivers: dict[str, Receiver]
    router: Router
    public_url: str
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    keep_deliveries: float = 7 * 86400.0  # seconds to keep delivered and failed notifications
    critical_score: float = 12.0  # alerts scoring this or more get severity=critical

    @property
    def enabled(self) -> bool:
        return bool(self.receivers)


def build_config(
    section: Mapping[str, Any] | None,
    *,
    webhooks: Iterable[str] = (),
    slack_webhooks: Iterable[str] = (),
    public_url: str = "",
    env: Mapping[str, str] | None = None,
) -> NotifyConfig:
    """The delivery configuration from the ``[alerts]`` section and the CLI flags' URLs. Flag receivers
    are named ``webhook-1``, ``slack-1``... in flag order and take the section's defaults."""
    env = os.environ if env is None else env
    section = dict(section or {})
    _no_unknown(section, _TOP_KEYS, "[alerts]")
    defaults = {
        "send_resolved": _bool(section.get("send_resolved", True), "alerts.send_resolved"),
        "timeout": _duration(section.get("timeout", 10.0), "alerts.timeout"),
        "concurrency": _positive_int(section.get("concurrency", 4), "alerts.concurrency"),
    }
    receivers: dict[str, Receiver] = {}
    raw_receivers = section.get("receivers", {})
    if not isinstance(raw_receivers, Mapping):
        raise NotifyConfigError("alerts.receivers should be a table of named receivers")
    for name, raw in raw_receivers.items():
        receivers[name] = _receiver(name, raw, defaults, env)
    for channel, urls in (("webhook", webhooks), ("slack", slack_webhooks)):
        for n, url in enumerate(urls, start=1):
            name = f"{channel}-{n}"
            if name in receivers:
                raise NotifyConfigError(f"receiver {name} is both in [alerts.receivers] and given by a flag")
            receivers[name] = Receiver(name, channel, _url(url, f"--{channel}"), **defaults)

    timing = Timing(
        group_wait=_duration(section.get("group_wait", Timing.group_wait), "alerts.group_wait"),
        group_interval=_duration(
            section.get("group_interval", Timing.group_interval), "alerts.group_interval"
        ),
        repeat_interval=_duration(
            section.get("repeat_interval", Timing.repeat_interval), "alerts.repeat_interval"
        ),
    )
    group_by = _labels(section.get("group_by", Route.group_by), "alerts.group_by")
    routes = tuple(
        _route(n, raw, receivers, timing, group_by) for n, raw in enumerate(section.get("routes", []))
    )
    default_names = section.get("receiver", list(receivers))
    if isinstance(default_names, str):
        default_names = [default_names]
    for name in default_names:
        _known(name, receivers, "alerts.receiver")
    defaults_routes = tuple(Route(f"default:{name}", name, (), group_by, timing) for name in default_names)

    retry = RetryPolicy(
        initial=_duration(section.get("retry_initial", RetryPolicy.initial), "alerts.retry_initial"),
        maximum=_duration(section.get("retry_max", RetryPolicy.maximum), "alerts.retry_max"),
        give_up_after=_duration(
            section.get("give_up_after", RetryPolicy.give_up_after), "alerts.give_up_after"
        ),
    )
    return NotifyConfig(
        receivers=receivers,
        router=Router(routes, defaults_routes),
        public_url=public_url.rstrip("/"),
        retry=retry,
        keep_deliveries=_duration(
            section.get("keep_deliveries", NotifyConfig.keep_deliveries), "alerts.keep_deliveries"
        ),
        critical_score=_number(
            section.get("critical_score", NotifyConfig.critical_score), "alerts.critical_score"
        ),
    )


def parse_duration(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(str(value))
        if not m:
            raise ValueError(value)
        seconds = float(m[1]) * _UNITS[m[2]]
    if seconds < 0:
        raise ValueError(value)
    return seconds


def _receiver(name: str, raw: Any, defaults: dict[str, Any], env: Mapping[str, str]) -> Receiver:
    where = f"alerts.receivers.{name}"
    if not isinstance(raw, Mapping):
        raise NotifyConfigError(f"{where} should be a table")
    _no_unknown(raw, _RECEIVER_KEYS, where)
    channels = [c for c in CHANNELS if c in raw]
    if len(channels) != 1:
        raise NotifyConfigError(f"{where} needs exactly one of: {', '.join(f'{c} = URL' for c in CHANNELS)}")
    channel = channels[0]
    secret = raw.get("secret")
    if "secret_env" in raw:
        secret = env.get(raw["secret_env"])
        if not secret:
            raise NotifyConfigError(f"{where}.secret_env names {raw['secret_env']}, which is not set")
    return Receiver(
        name=name,
        channel=channel,
        url=_url(raw[channel], f"{where}.{channel}"),
        secret=Secret(str(secret)) if secret else None,
        send_resolved=_bool(raw.get("send_resolved", defaults["send_resolved"]), f"{where}.send_resolved"),
        max_alerts=_positive_int(raw.get("max_alerts", 0), f"{where}.max_alerts", zero=True),
        timeout=_duration(raw.get("timeout", defaults["timeout"]), f"{where}.timeout"),
        concurrency=_positive_int(raw.get("concurrency", defaults["concurrency"]), f"{where}.concurrency"),
    )


def _route(
    n: int, raw: Any, receivers: dict[str, Receiver], timing: Timing, group_by: tuple[str, ...]
) -> Route:
    where = f"alerts.routes[{n}]"
    if not isinstance(raw, Mapping):
        raise NotifyConfigError(f"{where} should be a table")
    _no_unknown(raw, _ROUTE_KEYS, where)
    receiver = _known(raw.get("receiver"), receivers, f"{where}.receiver")
    try:
        matchers = parse_matchers(raw.get("matchers", []))
    except MatcherError as exc:
        raise NotifyConfigError(f"{where}.matchers: {exc}") from None
    return Route(
        id=f"routes[{n}]",
        receiver=receiver,
        matchers=matchers,
        group_by=_labels(raw["group_by"], f"{where}.group_by") if "group_by" in raw else group_by,
        timing=Timing(
            group_wait=_duration(raw.get("group_wait", timing.group_wait), f"{where}.group_wait"),
            group_interval=_duration(
                raw.get("group_interval", timing.group_interval), f"{where}.group_interval"
            ),
            repeat_interval=_duration(
                raw.get("repeat_interval", timing.repeat_interval), f"{where}.repeat_interval"
            ),
        ),
        continue_=_bool(raw.get("continue", False), f"{where}.continue"),
    )


def _url(value: Any, where: str) -> SecretURL:
    parts = urlsplit(str(value))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise NotifyConfigError(
            f"{where} should be an http:// or https:// URL"
        )  # the URL itself is not echoed
    return SecretURL(str(value))


def _known(name: Any, receivers: dict[str, Receiver], where: str) -> str:
    if name not in receivers:
        known = ", ".join(sorted(receivers)) or "none configured"
        raise NotifyConfigError(f"{where} names receiver {name!r}, which is not configured ({known})")
    return name


def _labels(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise NotifyConfigError(f"{where} should be a list of label names")
    return tuple(value)


def _duration(value: Any, where: str) -> float:
    try:
        return parse_duration(value)
    except ValueError:
        raise NotifyConfigError(
            f"{where} should be a duration such as 30s, 5m or 4h, got {value!r}"
        ) from None


def _bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise NotifyConfigError(f"{where} should be true or false, got {value!r}")
    return value


def _positive_int(value: Any, where: str, zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if zero else 1):
        raise NotifyConfigError(
            f"{where} should be a {'non-negative' if zero else 'positive'} integer, got {value!r}"
        )
    return value


def _no_unknown(raw: Mapping[str, Any], known: set[str], where: str) -> None:
    if unknown := set(raw) - known:
        raise NotifyConfigError(f"{where} has unknown keys: {', '.join(sorted(unknown))}")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise NotifyConfigError(f"{where} should be a number, got {value!r}")
    return float(value)
