"""Redaction of sensitive values on ingest, before anything is written.

Rules come from the config file's ``[[redact]]`` array. A rule picks values by attribute key
(``key``, exact, or ``key_pattern``, a regular expression) or by what the value looks like
(``value_pattern``: a regular expression or one of the named patterns below), and says what to do:

- ``drop``: remove the tag or attribute (for a value pattern: remove the matched text)
- ``mask``: replace it with ``[redacted]`` (for a value pattern: only the matched text)
- ``hash``: replace it with ``sha256:<16 hex>`` of the value and a salt, so equal values still
  group together in search without revealing them

```toml
[[redact]]
key = "user.email"
action = "hash"
[[redact]]
key_pattern = "^http\\\\.request\\\\.header\\\\.(authorization|cookie)$"
action = "drop"
[[redact]]
value_pattern = "email"          # also: bearer_token, card_number, or any regular expression
action = "mask"
```

Key rules apply to span tags and to every OTLP attribute set (span, resource, scope, events,
links); value patterns also to span names and annotations.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tracebox.appliance.config import ConfigError
from tracebox.appliance.model import Span

NAMED_PATTERNS = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    "bearer_token": r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{8,}",
    "card_number": r"\b(?:\d[ -]?){12,18}\d\b",
    "jwt": r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+",
}
ACTIONS = ("drop", "mask", "hash")
MASK = "[redacted]"
DROP = object()  # a key rule's verdict: remove the entry


class RedactionError(ConfigError):
    """A rule in the config file that cannot be used; the message names it."""


@dataclass(frozen=True)
class Rule:
    action: str
    key: str | None = None
    key_pattern: re.Pattern[str] | None = None
    value_pattern: re.Pattern[str] | None = None


def parse_rules(raw: Any, salt: str = "") -> Redactor | None:
    """A ``Redactor`` from the config file's ``redact`` array, or None when there are no rules."""
    if not raw:
        return None
    if not isinstance(raw, list):
        raise RedactionError("redact should be an array of tables ([[redact]])")
    rules = []
    for index, item in enumerate(raw, start=1):
        where = f"redact rule {index}"
        if not isinstance(item, dict):
            raise RedactionError(f"{where} should be a table")
        action = item.get("action", "mask")
        if action not in ACTIONS:
            raise RedactionError(f"{where}: action should be one of {', '.join(ACTIONS)}, got {action!r}")
        unknown = set(item) - {"action", "key", "key_pattern", "value_pattern"}
        if unknown:
            raise RedactionError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
        selectors = [k for k in ("key", "key_pattern", "value_pattern") if item.get(k)]
        if len(selectors) != 1:
            raise RedactionError(f"{where}: give exactly one of key, key_pattern, value_pattern")
        rules.append(
            Rule(
                action,
                key=item.get("key"),
                key_pattern=_compile(item.get("key_pattern"), where),
                value_pattern=_compile(
                    NAMED_PATTERNS.get(item.get("value_pattern", ""), item.get("value_pattern")), where
                ),
            )
        )
    return Redactor(rules, salt)


def _compile(pattern: str | None, where: str) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise RedactionError(f"{where}: bad regular expression {pattern!r}: {exc}") from None


class Redactor:
    def __init__(self, rules: list[Rule], salt: str = "") -> None:
        self._salt = salt.encode()
        self._exact = {r.key: r.action for r in rules if r.key}
        self._key_patterns = [(r.key_pattern, r.action) for r in rules if r.key_pattern]
        self._value_patterns = [(r.value_pattern, r.action) for r in rules if r.value_pattern]
        self._key_cache: dict[str, str | None] = {}

    def __call__(self, spans: list[Span]) -> list[Span]:
        """Redact in place (and return) the spans of one request."""
        for span in spans:
            if "name" in span:
                span["name"] = self._text(span["name"])
            if "tags" in span:
                span["tags"] = self._mapping(span["tags"])
            for annotation in span.get("annotations", ()):
                annotation["value"] = self._text(annotation["value"])
            otel = span.get("otel")
            if otel:
                span["otel"] = self._otel(otel)
        return spans

    def _otel(self, otel: dict[str, Any]) -> dict[str, Any]:
        out = dict(otel)  # resource and scope are shared between spans: never edit them in place
        for part in ("resource", "scope"):
            if part in out and out[part].get("attributes"):
                out[part] = {**out[part], "attributes": self._mapping(out[part]["attributes"])}
        if "attributes" in out:
            out["attributes"] = self._mapping(out["attributes"])
        for part in ("events", "links"):
            if part in out:
                out[part] = [self._item(item) for item in out[part]]
        return out

    def _item(self, item: dict[str, Any]) -> dict[str, Any]:
        item = dict(item)
        if "attributes" in item:
            item["attributes"] = self._mapping(item["attributes"])
        if isinstance(item.get("name"), str):
            item["name"] = self._text(item["name"])
        return item

    def _mapping(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in values.items():
            action = self._key_action(key)
            if action == "drop":
                continue
            out[key] = self._apply(action, value) if action is not None else self._value(value)
        return out

    def _key_action(self, key: str) -> str | None:
        if key not in self._key_cache:
            action = self._exact.get(key)
            if action is None:
                action = next((a for pattern, a in self._key_patterns if pattern.search(key)), None)
            if len(self._key_cache) < 10_000:
                self._key_cache[key] = action
            return action
        return self._key_cache[key]

    def _apply(self, action: str, value: Any) -> Any:
        if action == "mask":
            return MASK
        return self._hash(value if isinstance(value, str) else repr(value))

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._text(value)
        if isinstance(value, list):
            return [self._value(v) for v in value]
        if isinstance(value, dict):
            return {k: self._value(v) for k, v in value.items()}
        return value

    def _text(self, text: str) -> str:
        for pattern, action in self._value_patterns:
            text = pattern.sub(self._replacer(action), text)
        return text

    def _replacer(self, action: str) -> Callable[[re.Match[str]], str]:
        if action == "drop":
            return lambda m: ""
        if action == "mask":
            return lambda m: MASK
        return lambda m: self._hash(m.group(0))

    def _hash(self, value: str) -> str:
        return "sha256:" + hashlib.sha256(self._salt + value.encode()).hexdigest()[:16]
