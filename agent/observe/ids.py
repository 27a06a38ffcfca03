"""Call ids unique across restarts, processes and machines, sortable by time.

A ULID (48 bits of milliseconds, 80 random bits, Crockford base32): two agents sharing a
records directory, or one agent restarted, never reuse an id, and ids sort in the order the
calls started.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_call_id(now_s: float | None = None) -> str:
    """A fresh 26-character id, e.g. ``01JEXAMPLE5Q2S7W9D3FBRGH0K``."""
    millis = int((time.time() if now_s is None else now_s) * 1000) & ((1 << 48) - 1)
    value = (millis << 80) | secrets.randbits(80)
    return "".join(_ALPHABET[(value >> shift) & 31] for shift in range(125, -1, -5))
