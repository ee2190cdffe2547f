"""Values that must never reach a log, a repr or the UI: webhook secrets and webhook URLs (a Slack
incoming-webhook URL is itself a credential)."""

from __future__ import annotations

from urllib.parse import urlsplit


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other._value == self._value  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self), self._value))

    def __reduce__(self) -> tuple:
        raise TypeError("secrets are not pickled")


class SecretURL(Secret):
    """A URL shown only as scheme://host[:port]/..."""

    __slots__ = ()

    @property
    def display(self) -> str:
        parts = urlsplit(self._value)
        return f"{parts.scheme}://{parts.hostname}{f':{parts.port}' if parts.port else ''}/..."

    def __repr__(self) -> str:
        return f"SecretURL({self.display!r})"

    __str__ = __repr__
