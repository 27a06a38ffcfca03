"""Registrations of ``[[sip.accounts]]``: what each one's state is, what a failure means, when
to try again. No SIP here: each engine sends the REGISTERs and reports every outcome to
:class:`Registrations`, which logs one line per change of state, keeps the registrars'
addresses for the who-may-call check, and says how long to wait before the next attempt.

Failures are told apart because each needs a different fix: bad credentials (401/403/407:
the password or user name), unknown user (404), no answer (408, a timeout: a firewall, the
wrong port), DNS (the registrar's name does not resolve), TLS (handshake or certificate),
anything else as the registrar's own status line.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import structlog

from agent.config import AccountSettings, Settings
from agent.sip.callers import RegistrarSources

log = structlog.get_logger("sip")

#: Seconds before retrying after the 1st, 2nd, ... failure in a row; the last repeats.
BACKOFF_S = (2, 4, 8, 16, 32, 64, 128, 300)
REGISTERED = "registered"
FAILED = "failed"
UNREGISTERED = "unregistered"
STARTING = "registering"


def failure_kind(code: int, reason: str) -> str:
    """What a failed registration (SIP status ``code``, its ``reason`` text) means."""
    text = reason.lower()
    if "tls" in text or "ssl" in text or "certificate" in text or "handshake" in text:
        return "TLS"
    if "resolve" in text or "dns" in text or "unresolvable" in text or "name or service" in text:
        return "DNS"
    if code in (401, 403, 407):
        return "bad credentials"
    if code == 404:
        return "unknown user"
    if code == 408 or "timeout" in text or "timed out" in text:
        return "timeout"
    return "error"


def registrar_host(uri: str) -> tuple[str, int | None]:
    """Host and port of a registrar URI such as ``sip:host:5060;transport=tcp``."""
    rest = uri.split(":", 1)[1].split(";", 1)[0]
    parsed = urlsplit("//" + rest.split("@")[-1])
    return parsed.hostname or "", parsed.port


def resolve(host: str) -> set[str]:
    """The addresses ``host`` resolves to (blocking: run it off the loop); empty on failure."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError:
        return set()
    return {str(info[4][0]) for info in infos}


@dataclass
class AccountState:
    """One account as the rest of the agent sees it."""

    settings: AccountSettings
    password: str = field(repr=False)
    state: str = STARTING
    #: The last failure, in words (``failure_kind``, then the status), "" while none.
    detail: str = ""
    expires_s: int = 0
    failures: int = 0
    #: Set once the first attempt has an outcome (``voice-agent check`` waits for it).
    settled: bool = False


class Registrations:
    """Every account's registration state; engines report to it on the loop thread."""

    def __init__(
        self,
        settings: Settings,
        sources: RegistrarSources,
        on_change: Callable[[AccountState], None] | None = None,
    ) -> None:
        passwords = settings.secrets.sip_passwords
        self.accounts = {
            account.name: AccountState(account, passwords.get(account.password_env, ""))
            for account in settings.sip.accounts
        }
        self.sources = sources
        self._on_change = on_change

    @property
    def all_registered(self) -> bool:
        """Every account's registration is current (True with no accounts): ``/readyz``."""
        return all(account.state == REGISTERED for account in self.accounts.values())

    def registrar_resolved(self, name: str, addresses: set[str]) -> None:
        """Calls from these addresses come from account ``name``'s registrar."""
        self.sources.update(name, addresses)

    def registered(self, name: str, expires_s: int) -> None:
        account = self.accounts[name]
        changed = account.state != REGISTERED
        account.state, account.detail, account.expires_s = REGISTERED, "", expires_s
        account.failures = 0
        self._settle(account, changed, expires_s=expires_s)

    def failed(self, name: str, kind: str, code: int, reason: str) -> int:
        """Record a failure; the seconds to wait before trying again."""
        account = self.accounts[name]
        detail = f"{kind} ({code} {reason})" if code else f"{kind} ({reason})"
        changed = account.state != FAILED or account.detail != detail
        account.state, account.detail, account.expires_s = FAILED, detail, 0
        delay = BACKOFF_S[min(account.failures, len(BACKOFF_S) - 1)]
        account.failures += 1
        self._settle(account, changed, reason=detail, retry_in_s=delay, attempts=account.failures)
        return delay

    def unregistered(self, name: str) -> None:
        account = self.accounts[name]
        changed = account.state != UNREGISTERED
        account.state, account.expires_s = UNREGISTERED, 0
        self._settle(account, changed)

    def _settle(self, account: AccountState, changed: bool, **fields: object) -> None:
        account.settled = True
        if changed:
            line = log.warning if account.state == FAILED else log.info
            line(
                "sip_registration",
                account=account.settings.name,
                state=account.state,
                registrar=account.settings.registrar,
                **fields,
            )
            if self._on_change is not None:
                self._on_change(account)
