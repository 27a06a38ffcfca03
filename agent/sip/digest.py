"""Digest authentication of callers (RFC 3261 22, RFC 7616 / RFC 8760): challenges and the
check of a response. No I/O.

Nonces are stateless: a timestamp and an HMAC of it under a key made at start, so a flood of
challenged INVITEs keeps nothing here, and a nonce older than ``NONCE_LIFETIME_S`` is
answered with a fresh challenge marked ``stale=true`` (the peer retries without asking its
user). Challenges offer MD5 first and SHA-256 second, and a response with either is checked:
RFC 8760 would list the preferred (SHA-256) first, but peers that only read the first
challenge, SIPp and many phones among them, only do MD5 and would fail on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

NONCE_LIFETIME_S = 300
#: Algorithms offered in challenges, in this order, and their hash functions.
ALGORITHMS = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))\s*,?')


@dataclass(frozen=True)
class Credentials:
    """A peer's digest credentials: which name it goes by, and its password."""

    name: str
    username: str
    password: str


def parse_authorization(value: str) -> dict[str, str] | None:
    """The parameters of a ``Digest`` Authorization header, lower-case keys; None if none."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, token = match.group(2), match.group(3)
        params[match.group(1).lower()] = quoted if quoted is not None else token
    return params


class DigestAuth:
    """Challenges callers and checks their answers against ``peers``."""

    def __init__(
        self,
        realm: str,
        peers: tuple[Credentials, ...],
        clock: Callable[[], float] = time.time,
        key: bytes | None = None,
    ) -> None:
        self.realm = realm
        self._by_user = {peer.username: peer for peer in peers}
        self._clock = clock
        self._key = key or os.urandom(32)

    def _nonce(self) -> str:
        stamp = struct.pack(">Q", int(self._clock()))
        mac = hmac.new(self._key, stamp, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(stamp + mac).decode().rstrip("=")

    def _nonce_age(self, nonce: str) -> float | None:
        """Seconds since ``nonce`` was made here, or None when it was not made here."""
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except ValueError:
            return None
        if len(raw) != 24:
            return None
        stamp, mac = raw[:8], raw[8:]
        if not hmac.compare_digest(mac, hmac.new(self._key, stamp, hashlib.sha256).digest()[:16]):
            return None
        made: int = struct.unpack(">Q", stamp)[0]
        return self._clock() - made

    def challenge(self, stale: bool = False) -> tuple[tuple[str, str], ...]:
        """``WWW-Authenticate`` headers for a 401, one per algorithm."""
        nonce = self._nonce()
        extra = ", stale=true" if stale else ""
        return tuple(
            (
                "WWW-Authenticate",
                f'Digest realm="{self.realm}", nonce="{nonce}", algorithm={name}, '
                f'qop="auth"{extra}',
            )
            for name in ALGORITHMS
        )

    def check(self, method: str, header: str | None) -> tuple[Credentials | None, bool]:
        """(the peer ``header`` proves to be, or None; whether its nonce was merely stale)."""
        params = parse_authorization(header or "")
        if params is None:
            return None, False
        peer = self._by_user.get(params.get("username", ""))
        age = self._nonce_age(params.get("nonce", ""))
        if peer is None or age is None or params.get("realm") != self.realm:
            return None, False
        expected = _response(params, method, peer.password)
        if expected is None or not hmac.compare_digest(expected, params.get("response", "")):
            return None, False
        if not 0 <= age <= NONCE_LIFETIME_S:
            return None, True
        return peer, False


def _response(params: Mapping[str, str], method: str, password: str) -> str | None:
    """The response a peer knowing ``password`` sends with ``params``, or None when the
    parameters are not ones we offered (algorithm, qop)."""
    hash_fn = ALGORITHMS.get(params.get("algorithm", "MD5").upper())
    if hash_fn is None:
        return None

    def h(text: str) -> str:
        return hash_fn(text.encode()).hexdigest()

    ha1 = h(f"{params.get('username', '')}:{params.get('realm', '')}:{password}")
    ha2 = h(f"{method}:{params.get('uri', '')}")
    nonce = params.get("nonce", "")
    qop = params.get("qop", "")
    if qop == "auth":
        return h(f"{ha1}:{nonce}:{params.get('nc', '')}:{params.get('cnonce', '')}:auth:{ha2}")
    if qop:
        return None
    return h(f"{ha1}:{nonce}:{ha2}")
