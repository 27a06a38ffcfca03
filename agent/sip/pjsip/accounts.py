"""``[[sip.accounts]]`` on PJSIP: one registering ``pj.Account`` each.

pjsua registers when the account is added and refreshes ``delayBeforeRefreshSec`` before the
registration expires. Its own retry (a fixed interval) is off: after a failure the account is
re-registered on ``agent.sip.registration``'s backoff instead, from the loop. Shutdown
unregisters and waits (boundedly) for the registrar's answer before the library goes.

Calls the registrar delivers to these accounts reach the engine like any other INVITE: the
request gate has already screened and routed them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pjsua2 as pj
import structlog

from agent.config import AccountSettings
from agent.sip.registration import Registrations, failure_kind, registrar_host, resolve

log = structlog.get_logger("sip")

#: Refresh this long before the registration runs out (pjsua's default, kept below half of
#: the shortest registration allowed).
_REFRESH_BEFORE_S = 5
#: How long shutdown waits for the registrar to confirm the unregistration.
UNREGISTER_WAIT_S = 2.0


class AnsweringAccount(pj.Account):
    """A ``pj.Account`` whose INVITEs go to the engine: (call id, source IP, SDP body).
    The engine's own account (no registration) and every registering one share it."""

    def __init__(self, on_incoming: Callable[[int, str, str], None]) -> None:
        super().__init__()
        self._on_incoming = on_incoming

    def onIncomingCall(self, prm: pj.OnIncomingCallParam) -> None:
        try:
            message = prm.rdata.wholeMsg
            self._on_incoming(
                prm.callId,
                prm.rdata.srcAddress.rpartition(":")[0],
                message.partition("\r\n\r\n")[2],
            )
        except Exception:
            log.exception("sip_callback_failed", callback="onIncomingCall")


class _RegisteringAccount(AnsweringAccount):
    def __init__(
        self,
        name: str,
        on_incoming: Callable[[int, str, str], None],
        on_state: Callable[[str, int, str, int], None],
    ) -> None:
        super().__init__(on_incoming)
        self.name = name
        self._on_state = on_state

    def onRegState(self, prm: pj.OnRegStateParam) -> None:
        try:
            self._on_state(self.name, int(prm.code), str(prm.reason), int(prm.expiration))
        except Exception:
            log.exception("sip_callback_failed", callback="onRegState")


#: sip.srtp / an account's srtp -> pjsua's policy.
SRTP_USE = {
    "off": pj.PJMEDIA_SRTP_DISABLED,
    "optional": pj.PJMEDIA_SRTP_OPTIONAL,
    "mandatory": pj.PJMEDIA_SRTP_MANDATORY,
}


def apply_srtp(cfg: pj.AccountConfig, policy: str) -> None:
    """SDES-SRTP on an account's calls. Secure signalling is not demanded (0): SDES keys over
    a plain-UDP leg are still better than plain RTP, and the choice of transport is the
    operator's ([sip.tls])."""
    if policy == "off":
        return  # pjsua's defaults: no SRTP
    media = cfg.mediaConfig
    media.srtpUse = SRTP_USE[policy]
    media.srtpSecureSignaling = 0


def transport_port(transport_id: int) -> int:
    """The port a pjsua transport is bound to (its ``localName`` is ``host:port``)."""
    name = pj.Endpoint.instance().transportGetInfo(transport_id).localName
    return int(name.rsplit(":", 1)[1])


def account_config(
    account: AccountSettings,
    password: str,
    transport_id: int,
    public_host: str,
    srtp: str,
    listen_port: int = 0,
) -> pj.AccountConfig:
    """pjsua's configuration of a registering account; ``listen_port`` is the port its
    transport listens on (for a Contact at ``public_host`` over TCP or TLS)."""
    host, port = registrar_host(account.registrar)
    cfg = pj.AccountConfig()
    cfg.idUri = (
        f"{'sips' if account.registrar.startswith('sips:') else 'sip'}:{account.username}@{host}"
    )
    reg = cfg.regConfig
    scheme = "sips" if account.registrar.startswith("sips:") else "sip"
    suffix = "" if account.transport == "udp" else f";transport={account.transport}"
    reg.registrarUri = f"{scheme}:{host}{f':{port}' if port else ''}{suffix}"
    reg.timeoutSec = account.expires_s
    reg.retryIntervalSec = 0  # our backoff, not pjsua's fixed interval
    reg.firstRetryIntervalSec = 0
    reg.delayBeforeRefreshSec = _REFRESH_BEFORE_S
    reg.registerOnAdd = True
    reg.dropCallsOnFail = False  # a lost registration must not cut calls in progress
    cred = pj.AuthCredInfo("digest", "*", account.username, 0, password)
    cfg.sipConfig.authCreds.append(cred)
    cfg.sipConfig.transportId = transport_id
    apply_srtp(cfg, account.srtp or srtp)
    nat = cfg.natConfig
    # No SIP outbound (RFC 5626) flows: the registration's refreshes keep it alive, and a
    # registrar without the outbound module would refuse reg-id contacts.
    nat.sipOutboundUse = 0
    # sip.stun_server is for media only (each call's RTP address), as on baresip.
    nat.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
    if public_host:
        # The Contact names the configured public address, not what the registrar saw.
        nat.contactRewriteUse = 0
        if account.transport != "udp":
            # A transport's public address names its listener only: pjsua puts a TCP or TLS
            # connection's own local address in the Contact. So it is given the Contact:
            # the public host and the port that listener has, where the NAT forwards.
            host = f"[{public_host}]" if ":" in public_host else public_host
            cfg.sipConfig.contactForced = (
                f"<sip:{account.username}@{host}:{listen_port};transport={account.transport}>"
            )
    return cfg


class PjsipAccounts:
    """The registering accounts of one PJSIP engine (loop thread only)."""

    def __init__(
        self,
        registrations: Registrations,
        on_incoming: Callable[[int, str, str], None],
        transports: dict[str, int],
        public_host: str,
        srtp: str = "off",
    ) -> None:
        self.registrations = registrations
        self._on_incoming = on_incoming
        self._transports = transports
        self._public_host = public_host
        self._srtp = srtp
        self._accounts: dict[str, _RegisteringAccount] = {}
        self._retries: dict[str, asyncio.TimerHandle] = {}
        self._stopping = False

    async def resolve_registrars(self) -> None:
        """The registrars' addresses (for the who-may-call check), off the loop."""
        loop = asyncio.get_running_loop()
        for name, state in self.registrations.accounts.items():
            host, _ = registrar_host(state.settings.registrar)
            addresses = await loop.run_in_executor(None, resolve, host)
            self.registrations.registrar_resolved(name, addresses)

    def start(self) -> None:
        """Add every account: each sends its first REGISTER now."""
        for name, state in self.registrations.accounts.items():
            settings = state.settings
            host, _ = registrar_host(settings.registrar)
            if not self.registrations.sources.addresses(name):
                # pjsua would only say "unresolvable"; name the cause, and retry later.
                self._failed(name, "DNS", 0, f"{host} does not resolve")
                continue
            self._add(name)

    def _add(self, name: str) -> None:
        state = self.registrations.accounts[name]
        settings = state.settings
        account = _RegisteringAccount(name, self._on_incoming, self._state)
        transport_id = self._transports[settings.transport]
        cfg = account_config(
            settings,
            state.password,
            transport_id,
            self._public_host,
            self._srtp,
            transport_port(transport_id),
        )
        try:
            account.create(cfg, False)
        except pj.Error as exc:
            self._failed(name, failure_kind(0, exc.reason), 0, exc.reason)
            return
        self._accounts[name] = account

    def _state(self, name: str, code: int, reason: str, expiration: int) -> None:
        if self._stopping:
            if expiration == 0:
                self.registrations.unregistered(name)
            return
        if 200 <= code < 300 and expiration > 0:
            self.registrations.registered(name, expiration)
        elif 200 <= code < 300:
            self.registrations.unregistered(name)
        else:
            self._failed(name, failure_kind(code, reason), code, reason)

    def _failed(self, name: str, kind: str, code: int, reason: str) -> None:
        delay = self.registrations.failed(name, kind, code, reason)
        previous = self._retries.pop(name, None)
        if previous is not None:
            previous.cancel()
        loop = asyncio.get_running_loop()
        self._retries[name] = loop.call_later(delay, self._retry, name)

    def _retry(self, name: str) -> None:
        self._retries.pop(name, None)
        if self._stopping:
            return
        account = self._accounts.get(name)
        if account is None:
            # Never added (its registrar did not resolve): resolve again, then add.
            asyncio.get_running_loop().create_task(self._resolve_and_add(name))
            return
        try:
            account.setRegistration(True)
        except pj.Error as exc:
            self._failed(name, failure_kind(0, exc.reason), 0, exc.reason)

    async def _resolve_and_add(self, name: str) -> None:
        state = self.registrations.accounts[name]
        host, _ = registrar_host(state.settings.registrar)
        addresses = await asyncio.get_running_loop().run_in_executor(None, resolve, host)
        self.registrations.registrar_resolved(name, addresses)
        if self._stopping:
            return
        if addresses:
            self._add(name)
        else:
            self._failed(name, "DNS", 0, f"{host} does not resolve")

    def account(self, name: str) -> pj.Account | None:
        """The registering account ``name`` (None when it was never added)."""
        return self._accounts.get(name)

    def unregister(self) -> bool:
        """Send every registered account's unregistration; True when any is awaited."""
        self._stopping = True
        for handle in self._retries.values():
            handle.cancel()
        self._retries.clear()
        waiting = False
        for name, account in self._accounts.items():
            if self.registrations.accounts[name].state != "registered":
                continue
            try:
                account.setRegistration(False)
                waiting = True
            except pj.Error as exc:
                log.warning("sip_unregister_failed", account=name, reason=exc.reason)
        return waiting

    def pending(self) -> bool:
        """Any unregistration still unanswered."""
        return any(
            self.registrations.accounts[name].state == "registered" for name in self._accounts
        )

    def destroy(self) -> None:
        for account in self._accounts.values():
            account.shutdown()
        self._accounts.clear()
