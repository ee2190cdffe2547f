"""The one HTTP sender every channel shares: POST with a timeout, no redirects, and an outcome that
says whether to retry and how long the receiver asked us to wait.

Error texts never carry the URL (a Slack webhook URL is a credential), only what went wrong.
"""

from __future__ import annotations

import email.utils
from dataclasses import dataclass

import aiohttp

#: Statuses worth another try; any other 4xx is the request's fault and is not retried.
RETRY_STATUSES = frozenset({408, 425, 429})
MAX_ERROR_BODY = 200


@dataclass(frozen=True)
class Outcome:
    status: int | None  # None: no response (refused, reset, timeout)
    error: str | None
    retry_after: float | None = None  # seconds, from Retry-After

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def retryable(self) -> bool:
        return self.status is None or self.status in RETRY_STATUSES or self.status >= 500


async def post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str], timeout: float, now: float
) -> Outcome:
    try:
        async with session.post(
            url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            if 200 <= resp.status < 300:
                return Outcome(resp.status, None)
            text = (await resp.content.read(MAX_ERROR_BODY)).decode("utf-8", "replace").strip()
            error = f"HTTP {resp.status}" + (f": {text}" if text else "")
            return Outcome(resp.status, error, parse_retry_after(resp.headers.get("Retry-After"), now))
    except TimeoutError:
        return Outcome(None, f"timed out after {timeout:g}s")
    except aiohttp.ClientConnectorError as exc:
        return Outcome(None, f"cannot connect: {exc.os_error.strerror or type(exc.os_error).__name__}")
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(None, type(exc).__name__)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)
