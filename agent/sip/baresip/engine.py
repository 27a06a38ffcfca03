"""The baresip engine: baresip-python's runtime, its user agents (the process's own, one per
``[[sip.accounts]]`` entry), the TLS transport, the request gate, the media clock, and every
call of the process (``agent.sip.engine.SipEngine``).

baresip runs its own thread (``baresip-re``: SIP, RTP, timers) and one transmit thread per
call; the binding hands its events to this loop, so calls, sessions and this engine share the
loop thread. The request gate runs on the re thread (``agent.sip.baresip.gate``) and the
media clock on the loop (``agent.sip.baresip.media``). This package is the only code that
imports ``baresip``.

Teardown: every call is hung up and awaited, the gate is removed and the binding's event
sink given back before the runtime closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Any

import baresip
import structlog

from agent.config import SipSettings
from agent.ports import can_bind, unused_port
from agent.sip import stun_probe
from agent.sip.baresip import native, player, source, stack_config
from agent.sip.baresip.accounts import BaresipAccounts
from agent.sip.baresip.call import BaresipCall
from agent.sip.baresip.gate import STACK_CODECS, BaresipRequestGate, contact_uri
from agent.sip.baresip.logs import StackLogs
from agent.sip.baresip.media import MediaClock
from agent.sip.baresip.register_contact import RegisterContactRewriter
from agent.sip.engine import CallListener, DialError, EngineStartError, IncomingCall
from agent.sip.message import SipRequest
from agent.sip.refusals import RefusalLog
from agent.sip.registration import Registrations
from agent.sip.request_policy import Admission, CallRefused, Gatekeeper, RequestPolicy
from agent.sip.rtp_filter import nat_networks

log = structlog.get_logger("sip")
_POLL_INTERVAL_S = 0.02


def sdp_address(public_host: str) -> str:
    """The IP address SDP names for ``sip.public_host`` (a name is resolved once, at start;
    "" for none); raises ``EngineStartError`` when it does not resolve."""
    if not public_host:
        return ""
    with contextlib.suppress(ValueError):
        return str(ipaddress.ip_address(public_host))
    try:
        found = socket.getaddrinfo(public_host, None, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError as exc:
        raise EngineStartError(f"sip.public_host {public_host!r} does not resolve: {exc}") from None
    return str(found[0][4][0])


class BaresipEngine:
    """Owns baresip for this process (``agent.sip.engine.SipEngine``)."""

    #: One media ticker on the loop paces every call (``agent.sip.baresip.media``).
    loop_paces_audio = True

    def __init__(
        self,
        settings: SipSettings,
        on_incoming: IncomingCall,
        admission: Admission = lambda: None,
        on_call_refused: CallRefused | None = None,
        gatekeeper: Gatekeeper | None = None,
        registrations: Registrations | None = None,
    ) -> None:
        self.settings = settings
        self._registrations = registrations
        self._on_incoming = on_incoming
        self.policy = RequestPolicy(settings.user, admission, on_call_refused, gatekeeper)
        self._refusals = RefusalLog()
        self.bound_port: int = settings.port
        self.calls: dict[str, BaresipCall] = {}
        self._by_sip_id: dict[str, BaresipCall] = {}
        self.clock = MediaClock(idle=source.keep_idle_feeds_sending)
        self._runtime: baresip.Runtime | None = None
        self._agent: baresip.UserAgent | None = None
        self._executor: native.ReThreadExecutor | None = None
        self._gate: BaresipRequestGate | None = None
        self._logs = StackLogs()
        #: The agent's own audio source and player (one media clock instead of a thread each).
        self._drivers = {"source": source.registration(), "player": player.registration()}
        self._accounts: BaresipAccounts | None = None
        #: The engine's own ``struct ua *`` (re thread only; its account's codecs are set
        #: before each call it places).
        self._native_agent: Any = None
        #: Stack events of calls not yet known, kept while a dial is under way (see dial).
        self._dialing = 0
        self._unclaimed: list[baresip.StackEvent] = []
        #: The IP address our SDP names ("" for the stack's own choice, the local one).
        self._sdp_address = ""
        #: Where sip.stun_server answers from: let through every call's RTP source filter.
        self._stun_source: tuple[str, int] | None = None
        self._nat_networks = nat_networks(settings.nat_networks)
        #: Keeps the REGISTER Contact rewrite's callbacks alive while libre holds them.
        self._register_contact: native.RegisterContactHelper | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the stack on ``sip.host:sip.port``; raises ``EngineStartError``."""
        problem = native.check_versions()
        if problem is not None:
            raise EngineStartError(f"the baresip engine cannot run with {problem}")
        self._sdp_address = sdp_address(self.settings.public_host)
        self._stun_source = stun_probe.resolve_server(self.settings.stun_server)
        if self._stun_source is not None:
            await stun_probe.check_server(self._stun_source, self.settings.host)
        host = self.settings.host
        port = self.settings.port or unused_port(host)
        # baresip logs a failed bind and carries on without SIP: check first.
        tcp = "tcp" in stack_config.transports(self.settings)
        if not can_bind(host, port) or (tcp and not can_bind(host, port, socket.SOCK_STREAM)):
            raise EngineStartError(
                f"cannot start SIP on {host}:{port}: {os.strerror(errno.EADDRINUSE)}"
            )
        tls = self._tls_transport()
        self._logs.open()
        runtime = baresip.Runtime(native_log_level="warning")
        try:
            await runtime.start(stack_config.runtime_config(self.settings, port))
            self._runtime = runtime
            self._logs.capture_libre_debug()
            self._agent = await baresip.UserAgent.create(
                runtime, stack_config.account(self.settings, port), transfer_policy="reject"
            )
        except baresip.BaresipError as exc:
            await self._close_runtime()
            raise EngineStartError(f"cannot start SIP on {host}:{port}: {exc}") from None
        self.bound_port = port
        loop = asyncio.get_running_loop()
        self._executor = native.ReThreadExecutor(runtime)
        # Before the first call: every user agent's account names these two.
        for part, driver in self._drivers.items():
            status = await self._executor.run(driver.register)
            if status != 0:
                await self._close_runtime()
                raise EngineStartError(f"cannot register the audio {part}: {os.strerror(status)}")
        # The user agent just created, before any account's.
        self._native_agent, _ = await self._executor.run(native.newest_agent)
        if tls is not None:
            status = await self._executor.run(lambda: native.add_tls_transport(tls))
            if status != 0:
                await self._close_runtime()
                raise EngineStartError(
                    f"cannot start SIP over TLS on {host}:{tls.port}: {os.strerror(status)}"
                )
        gate = BaresipRequestGate(
            self.policy,
            self.settings.codecs,
            loop,
            self._refusals.answered,
            self._in_dialog,
            public_host=self.settings.public_host,
        )
        await self._executor.run(gate.install)
        self._gate = gate
        self._agent.on_incoming(self._incoming)
        runtime.subscribe(self._stack_event)
        if self._registrations is not None and self._registrations.accounts:
            accounts = BaresipAccounts(
                self._registrations,
                runtime,
                self._executor,
                tuple(STACK_CODECS[codec] for codec in self.settings.codecs),
                self.settings.srtp,
                self._incoming,
                media_params=stack_config.media_params(self.settings),
            )
            try:
                gate.contact_users = await accounts.create()
            except EngineStartError:
                await self.shutdown()
                raise
            self._accounts = accounts
            await self._publish_register_contact()
        self.clock.start(loop)
        if self._accounts is not None:
            await self._accounts.start()

    async def _publish_register_contact(self) -> None:
        """``sip.public_host`` in the Contact of the REGISTERs (libre names the local
        address there: ``agent.sip.baresip.register_contact``)."""
        public_host = self.settings.public_host
        transports = {account.transport for account in self.settings.accounts}
        if not public_host or not transports:
            return
        assert self._executor is not None
        rewriter = RegisterContactRewriter(public_host)
        helper = native.RegisterContactHelper(
            rewriter.outgoing, rewriter.incoming, self._register_rewrite_failed
        )
        self._register_contact = helper
        if "udp" in transports and not await self._executor.run(
            lambda: helper.install(self.bound_port)
        ):
            log.warning(
                "sip_register_contact_local",
                reason="the SIP UDP socket was not found: REGISTER names the local address",
            )
        if transports & {"tcp", "tls"} and not await self._executor.run(helper.install_streams):
            log.warning(
                "sip_register_contact_local",
                reason="no SIP stack to trace: REGISTER over TCP or TLS names the local address",
            )

    def _register_rewrite_failed(self, error: BaseException) -> None:
        # re thread; the message went on unchanged.
        log.error("sip_register_contact_error", error=repr(error))

    def _tls_transport(self) -> native.TlsTransport | None:
        """The TLS transport to open: with a certificate (calls over TLS too), or for
        accounts that register over TLS; None for neither."""
        tls = self.settings.tls
        if not tls.cert_file and not any(
            account.transport == "tls" for account in self.settings.accounts
        ):
            return None
        if tls.port and not can_bind(self.settings.host, tls.port, socket.SOCK_STREAM):
            raise EngineStartError(
                f"cannot start SIP over TLS on {self.settings.host}:{tls.port}: "
                f"{os.strerror(errno.EADDRINUSE)}"
            )
        try:
            cert = Path(tls.cert_file).read_bytes() if tls.cert_file else b""
            key = Path(tls.key_file).read_bytes() if tls.key_file else b""
        except OSError as exc:
            raise EngineStartError(f"sip.tls: {exc}") from None
        defaults = ssl.get_default_verify_paths()
        return native.TlsTransport(
            host=self.settings.host,
            port=tls.port,
            cert_pem=cert,
            key_pem=key,
            # "" = OpenSSL's default locations, which libre does not load by itself.
            ca_file=tls.ca_file or (defaults.cafile or ""),
            ca_path="" if tls.ca_file else (defaults.capath or ""),
            verify_server=tls.verify_server,
        )

    async def run(self) -> None:
        """Everything runs on the stack's thread and the media clock: wait until cancelled."""
        await asyncio.Event().wait()

    async def shutdown(self, timeout_s: float = 3.0) -> None:
        """End every call, wait for their end, then close the stack."""
        if self._runtime is None:
            return
        for call in list(self.calls.values()):
            call.hang_up()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.calls and loop.time() < deadline:
            await asyncio.sleep(_POLL_INTERVAL_S)
        self.clock.stop()
        for call in list(self.calls.values()):
            await call.close()
        if self._accounts is not None:
            await self._accounts.unregister()
            self._accounts = None
        if self._executor is not None and self._register_contact is not None:
            with contextlib.suppress(baresip.BaresipError):
                await self._executor.run(self._register_contact.uninstall_streams)
            self._register_contact = None
        if self._executor is not None and self._gate is not None:
            with contextlib.suppress(baresip.BaresipError):
                await self._executor.run(self._gate.uninstall)
            self._gate = None
        if self._executor is not None:
            with contextlib.suppress(baresip.BaresipError):
                for driver in self._drivers.values():
                    await self._executor.run(driver.unregister)
        await self._close_runtime()

    async def _close_runtime(self) -> None:
        if self._executor is not None:
            self._executor.close()
            self._executor = None
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            try:
                await runtime.close()
            except baresip.BaresipError as exc:
                log.warning("sip_close_failed", reason=str(exc)[:200])
        self._logs.close()

    # -- calls -------------------------------------------------------------------------------
    def _incoming(self, stack_call: baresip.Call) -> None:
        assert self._executor is not None
        call = BaresipCall(
            stack_call,
            self._executor,
            self._ended,
            sdp_address=self._sdp_address,
            stun_source=self._stun_source,
            nat_networks=self._nat_networks,
        )
        call.on_media_ready = self._media_ready
        self.calls[call.call_id] = call
        self._by_sip_id[call.sip_call_id] = call
        call.log.info("sip_invite", remote=call.remote_uri, local=call.local_uri)
        self._on_incoming(call)

    def _media_ready(self, call: BaresipCall) -> None:
        if call.pump is not None and not call.disconnected:
            self.clock.add(call.call_id, call.pump)

    def _ended(self, call: BaresipCall) -> None:
        self.clock.remove(call.call_id)
        self.calls.pop(call.call_id, None)
        if self._by_sip_id.get(call.sip_call_id) is call:
            del self._by_sip_id[call.sip_call_id]
        # The call's counters and RTP statistics, once, at its end (bench/ reads this line).
        call.log.info("media_stats", **call.media_stats())

    def _in_dialog(self, request: SipRequest, body: str) -> None:
        call = self._by_sip_id.get(request.header("call-id") or "")
        if call is not None:
            call.in_dialog(
                request.method, request.content_type, request.header("event") or "", body
            )

    async def dial(
        self,
        uri: str,
        listener: CallListener,
        *,
        account: str = "",
        from_user: str = "",
    ) -> BaresipCall:
        """An outbound call (``agent.sip.engine.SipEngine.dial``).

        The binding reports a call's events to the ``baresip.Call`` it builds once the dial
        command returns; events the loop delivers before that (a quick 486 on loopback)
        would be lost to it. This engine listens to every stack event: those of unknown
        calls that arrive while a dial is under way are kept, and the new call gets its own
        at once, in order, before anything newer.
        """
        if self._runtime is None or self._agent is None or self._executor is None:
            raise DialError("the SIP engine is not running")
        agent, native_ua = self._agent, self._native_agent
        user, domain = self.settings.user, f"{self.settings.host}:{self.bound_port}"
        if account:
            found = self._accounts.agent(account) if self._accounts is not None else None
            if found is None:
                raise DialError(f"no [[sip.accounts]] account {account!r} on the baresip engine")
            agent, native_ua, user, domain = found
        headers: dict[str, str] = {}
        if from_user and from_user != user:
            # One identity per user agent: baresip puts its account's AOR in From, so the
            # number to present goes where trunks read a caller ID when From is the
            # account (RFC 3325's P-Asserted-Identity).
            headers["P-Asserted-Identity"] = f"<sip:{from_user}@{domain}>"
        # The Contact an incoming INVITE left on this user agent (sips:, TCP, another
        # address) must not go out on the call we place: a UDP call gets ours, at
        # sip.public_host when set. (A TCP or TLS account's calls keep baresip's own.)
        udp = (
            not account
            or self._registrations is None
            or self._registrations.accounts[account].settings.transport == "udp"
        )
        ours = native.Arrival((self.settings.host, self.bound_port), "udp")
        public_host = self.settings.public_host
        # Bound to every address with no public one: only baresip knows which it sends from.
        udp = udp and bool(public_host or self.settings.host not in ("0.0.0.0", "::"))
        self._dialing += 1
        try:
            gate = self._gate

            def prepare() -> None:
                if gate is not None:
                    gate.offer_all_codecs(native.account_of(native_ua))
                if udp:
                    user = native.agent_contact_user(native_ua)
                    native.set_agent_contact(
                        native_ua, contact_uri("sip:", user, ours, public_host)
                    )

            await self._executor.run(prepare)
            stack_call = await agent.dial(uri, headers=headers or None)
        except (baresip.BaresipError, ValueError) as exc:
            raise DialError(f"INVITE not sent: {str(exc)[:200]}") from None
        finally:
            self._dialing -= 1
        local = f"sip:{user}@{domain}"
        call = BaresipCall(
            stack_call,
            self._executor,
            self._ended,
            local_uri=local,
            on_call_id=self._call_id_known,
            stun_source=self._stun_source,
            nat_networks=self._nat_networks,
        )
        call.remote_uri = uri
        call.on_media_ready = self._media_ready
        call.listener = listener
        self.calls[call.call_id] = call
        early = [e for e in self._unclaimed if e.call == stack_call.handle]
        self._unclaimed = [e for e in self._unclaimed if e.call != stack_call.handle]
        if self._dialing == 0:
            self._unclaimed.clear()
        call.log.info("sip_dial", remote=uri, local=local)
        for event in early:
            call.replay(event)
        return call

    def _call_id_known(self, call: BaresipCall) -> None:
        self._by_sip_id[call.sip_call_id] = call

    def _stack_event(self, event: baresip.StackEvent) -> None:
        if self._dialing and event.call and not self._known(event.call):
            self._unclaimed.append(event)
        if event.event is baresip.Event.SIPSESS_FAILED:
            # INVITEs the stack refused itself (no common codec, say): no call was made.
            log.info("sip_invite_refused", reason=(event.text or "")[:200])

    def _known(self, handle: int) -> bool:
        return any(call.stack_handle == handle for call in self.calls.values())

    @property
    def handle(self) -> Any:
        """The running ``baresip.Runtime`` (for diagnostics and tests)."""
        return self._runtime
