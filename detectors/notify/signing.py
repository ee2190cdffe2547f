"""Webhook signatures, Stripe-style, so a receiver can tell tracebox's requests from anyone else's.

With a ``secret`` configured for a receiver, every request carries::

    X-Tracebox-Signature: t=1718000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd
    X-Tracebox-Delivery: 3f1c0f0e6f7d4c53a1f0f9b3c8d2e4a1

``v1`` is the hex HMAC-SHA256, keyed with the secret, of ``f"{t}.".encode() + body`` (the raw request
body, before any JSON parsing). ``t`` is when this attempt was sent, so retries carry a fresh
timestamp; reject old ones to stop replays. Every request, signed or not, carries
``X-Tracebox-Delivery``: the same id on every retry of one notification, so a receiver drops
duplicates by remembering the ids it has processed (delivery is at-least-once).

Verifying in a receiver (Python, standard library only)::

    import hashlib, hmac, time

    def verify(secret: str, body: bytes, header: str, tolerance: int = 300) -> bool:
        fields = [part.split("=", 1) for part in header.split(",") if "=" in part]
        stamp = next((v for k, v in fields if k == "t"), "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > tolerance:
            return False
        expected = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")

    # in the handler:
    #   if not verify(SECRET, request_body_bytes, headers["X-Tracebox-Signature"]): return 401
    #   if headers["X-Tracebox-Delivery"] in seen: return 200   # a retry we already handled
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Tracebox-Signature"
DELIVERY_HEADER = "X-Tracebox-Delivery"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, body: bytes, timestamp: int) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def headers(delivery_id: str, body: bytes, secret: str | None, now: float) -> dict[str, str]:
    out = {DELIVERY_HEADER: delivery_id}
    if secret:
        out[SIGNATURE_HEADER] = signature(secret, body, int(now))
    return out


def verify(
    secret: str, body: bytes, header: str, *, tolerance: float = DEFAULT_TOLERANCE_S, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and its timestamp is within ``tolerance``
    seconds of ``now``. Several ``v1`` values are accepted, for rotating a secret."""
    fields = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamp = next((v for k, v in fields if k == "t"), "")
    if not stamp.isdigit():
        return False
    if abs((time.time() if now is None else now) - int(stamp)) > tolerance:
        return False
    expected = signature(secret, body, int(stamp)).rsplit("v1=", 1)[1]
    return any(hmac.compare_digest(expected, v) for k, v in fields if k == "v1")
