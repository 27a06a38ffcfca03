"""The request signature: ``X-Voice-Agent-Signature: t=<unix seconds>,v1=<hex HMAC>``.

The HMAC-SHA256, keyed with the shared secret, is over ``"<t>.<raw body>"`` (the scheme
Stripe and others use): a receiver that checks it knows the body came from us unchanged, and
by rejecting an old ``t`` it refuses a replayed request. Each attempt is signed anew with the
current time, so a delivery retried for hours still passes a receiver's freshness window.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Voice-Agent-Signature"
#: The same value on every attempt of one delivery, so a receiver can drop duplicates.
DELIVERY_HEADER = "X-Voice-Agent-Delivery"
#: 1 for the first attempt of a delivery, counting on (within one agent process).
ATTEMPT_HEADER = "X-Voice-Agent-Attempt"


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()


def signature_header(secret: str, body: bytes, now_s: float | None = None) -> str:
    """The header value for ``body`` sent now (or at ``now_s``)."""
    timestamp = int(time.time() if now_s is None else now_s)
    return f"t={timestamp},v1={signature(secret, body, timestamp)}"


def verify(
    secret: str, body: bytes, header: str, *, now_s: float | None = None, tolerance_s: float = 300
) -> bool:
    """Whether ``header`` signs ``body`` under ``secret`` and is at most ``tolerance_s`` old
    (what a receiver does; the agent uses it in its own tests)."""
    fields: dict[str, list[str]] = {}
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key, []).append(value)
    try:
        timestamp = int(fields["t"][0])
    except (KeyError, ValueError):
        return False
    now = time.time() if now_s is None else now_s
    if abs(now - timestamp) > tolerance_s:
        return False
    expected = signature(secret, body, timestamp)
    return any(hmac.compare_digest(expected, candidate) for candidate in fields.get("v1", []))
