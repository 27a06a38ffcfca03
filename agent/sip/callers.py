"""Who may call: the source check and the digest check of new requests. No I/O.

A new request is accepted from
- an address in ``sip.allow_from`` (IP-authenticated trunks, a PBX; loopback by default),
- the registrar of a ``[[sip.accounts]]`` entry (the addresses its name resolved to), or
- a ``[[sip.peers]]`` entry that answered our digest challenge.

Anything else: an INVITE gets 403 (401 with a challenge when peers are configured), every
other request nothing at all, so a scanner learns nothing from OPTIONS or REGISTER. Sources
not allowed are rate-limited per address (a token bucket): past the limit their requests are
dropped unanswered, so a flood costs neither a transaction nor a log line per packet and real
calls from allowed sources go on.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from agent.sip.digest import DigestAuth
from agent.sip.message import SipRequest
from agent.sip.request_policy import DROP, Answer

#: Requests a source that is not allowed may send per second, and in one burst, before the
#: rest are dropped: enough for a peer's challenge round trips and retransmissions.
STRANGER_RATE_PER_S = 2.0
STRANGER_BURST = 10
_BUCKETS_KEPT = 4096


@dataclass(frozen=True)
class Verdict:
    """Whether a new request may go on, and on whose behalf."""

    #: None: accepted; otherwise the answer to send (or ``DROP``).
    answer: Answer | None
    #: The account or peer it came in on ("" for an allowed address).
    account: str = ""
    #: Whether its headers (P-Asserted-Identity) can be believed.
    trusted: bool = False


class SourceRate:
    """A token bucket per source address."""

    def __init__(
        self,
        rate_per_s: float = STRANGER_RATE_PER_S,
        burst: int = STRANGER_BURST,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str) -> bool:
        now = self._clock()
        tokens, last = self._buckets.get(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[source] = (tokens - 1.0 if allowed else tokens, now)
        self._buckets.move_to_end(source)
        while len(self._buckets) > _BUCKETS_KEPT:
            self._buckets.popitem(last=False)
        return allowed


class RegistrarSources:
    """The addresses each account's registrar resolved to (set by the registration code,
    read by the request gate on whichever thread it runs: the mapping is replaced whole)."""

    def __init__(self) -> None:
        self._by_ip: dict[str, str] = {}

    def update(self, account: str, addresses: set[str]) -> None:
        kept = {ip: name for ip, name in self._by_ip.items() if name != account}
        kept.update(dict.fromkeys(addresses, account))
        self._by_ip = kept

    def account_of(self, ip: str) -> str | None:
        return self._by_ip.get(ip)

    def addresses(self, account: str) -> set[str]:
        return {ip for ip, name in self._by_ip.items() if name == account}


class CallerScreen:
    """The who-may-call check of every request outside a dialog."""

    def __init__(
        self,
        allow_from: tuple[str, ...],
        registrars: RegistrarSources,
        digest: DigestAuth | None,
        rate: SourceRate | None = None,
    ) -> None:
        self.networks = tuple(ipaddress.ip_network(net, strict=False) for net in allow_from)
        self.registrars = registrars
        self.digest = digest
        self.rate = rate or SourceRate()

    def allowed_address(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def screen(self, request: SipRequest) -> Verdict:
        ip = request.source_ip
        account = self.registrars.account_of(ip)
        if account is not None:
            return Verdict(None, account, trusted=True)
        if self.allowed_address(ip):
            return Verdict(None, "", trusted=True)
        credentials = request.header("authorization")
        stale = False
        if request.method == "INVITE" and self.digest is not None and credentials is not None:
            # Checked before the rate limit: a busy authenticated peer is not a flood.
            peer, stale = self.digest.check(request.method, credentials)
            if peer is not None:
                return Verdict(None, peer.name, trusted=False)
        if not self.rate.allow(ip):
            return Verdict(DROP)
        if request.method != "INVITE":
            # Nothing for a stranger's OPTIONS, REGISTER, MESSAGE...: no sign anyone is here.
            return Verdict(DROP)
        if self.digest is None:
            return Verdict(Answer(403, "Forbidden", why="source not allowed", kind="not_allowed"))
        if credentials is not None and not stale:
            return Verdict(
                Answer(403, "Forbidden", why="digest authentication failed", kind="auth_failed")
            )
        return Verdict(
            Answer(
                401,
                "Unauthorized",
                self.digest.challenge(stale=stale),
                "challenged" if not stale else "stale nonce",
            )
        )
