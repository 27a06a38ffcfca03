"""The PJSIP engine: the PJSUA2 endpoint in poll mode, its UDP transport and its account.

Poll mode (``threadCnt=0``, ``mainThreadOnly=True``) makes every SIP callback run inside
``libHandleEvents`` on the asyncio loop thread, so SIP state and call sessions share one thread
and need no locks. The only other thread is the media clock, which calls the media ports.

Teardown order matters to PJSIP: every port, call and account must be destroyed before
``libDestroy`` (its assertions abort the process otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

import pjsua2 as pj
import structlog

from agent.config import PJSUA_CALL_SLOTS, SipSettings
from agent.sip import stun_probe
from agent.sip.engine import CallListener, DialError, EngineStartError, IncomingCall
from agent.sip.message import SipRequest, codecs_for_offer, wants_sips_contact
from agent.sip.pjsip.accounts import (
    UNREGISTER_WAIT_S,
    AnsweringAccount,
    PjsipAccounts,
    apply_srtp,
    transport_port,
)
from agent.sip.pjsip.call import PjsipCall, _PjCall
from agent.sip.pjsip.gate import PjsipRequestGate
from agent.sip.pjsip.media_port import BridgePort, FrameWaker
from agent.sip.refusals import RefusalLog
from agent.sip.registration import Registrations
from agent.sip.request_policy import Admission, CallRefused, Gatekeeper, RequestPolicy
from agent.sip.rtp_filter import nat_networks
from agent.sip.stack_log import StackLog

log = structlog.get_logger("sip")

#: pjsua log levels: 1 error, 2 warning, 3 info, 4+ debug.
_PJ_LOG_LEVEL = 2
#: sip.codecs name -> PJSUA2 codec id.
_PJ_CODECS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1"}
#: Poll period while waiting for something to end (shutdown).
_POLL_INTERVAL_S = 0.004
#: How long the stack keeps running after a call's end when it shuts down (see shutdown).
CALL_END_SETTLE_S = 1.0
#: Without caller frames to wake it, the loop still handles SIP this often: INVITEs wait at
#: most this long, and an idle agent wakes 40 times a second rather than 250.
_IDLE_POLL_S = 0.025


def _full_scale_g722() -> None:
    """G.722 at the same level as every other G.722 endpoint.

    pjmedia shifts G.722's PCM by 2 bits by default (``PJMEDIA_G722_DEFAULT_PCM_SHIFT``):
    what it sends is 12 dB quieter, and what it receives 12 dB louder, than a standard
    encoder and decoder (libg722, baresip's) make it. Not in pjsua2's API; the wheel exports
    the C function.
    """
    lib = ctypes.CDLL(pj._pjsua2.__file__)
    lib.pjmedia_codec_g722_set_pcm_shift.argtypes = [ctypes.c_uint]
    lib.pjmedia_codec_g722_set_pcm_shift(0)


def _resolve(wakeup: asyncio.Future[None]) -> None:
    if not wakeup.done():
        wakeup.set_result(None)


@contextlib.contextmanager
def _stdout_silenced() -> Iterator[None]:
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


class _LogForwarder(pj.LogWriter):
    """PJSIP's own log lines, through structlog (so JSON mode stays JSON), rate-limited
    (``agent.sip.stack_log``): PJSIP quotes every datagram it cannot parse."""

    #: While set, lines are dropped: used where a failure surfaces as an exception anyway, so
    #: the user sees one clear error instead of PJSIP's three.
    muted = False

    def __init__(self) -> None:
        super().__init__()
        self._log = StackLog("pjsip")

    def write(self, entry: pj.LogEntry) -> None:
        # pjsua's own "SIP registration failed" lines: the engine reports every outcome
        # itself, one sip_registration line per change of state.
        if not self.muted and "SIP registration failed" not in entry.msg:
            self._log.line(entry.msg, error=entry.level <= 1)


class PjsipEngine:
    """Owns the PJSUA2 library for this process (``agent.sip.engine.SipEngine``)."""

    #: PJSIP's own media clock thread paces the audio; loops ahead of it made its RTP later
    #: (``bench/capacity.py``, 50 calls on 13 processes: jitter p99 4.3 -> 7.3 ms).
    loop_paces_audio = False

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
        self._on_incoming = on_incoming
        self.policy = RequestPolicy(settings.user, admission, on_call_refused, gatekeeper)
        self._gate: PjsipRequestGate | None = None
        self._refusals = RefusalLog()
        self._ep: pj.Endpoint | None = None
        self._account: AnsweringAccount | None = None
        self._account_config: pj.AccountConfig | None = None
        #: The Contact a sips: call over TLS is answered with ("" without a TLS listener).
        self._sips_contact = ""
        self._registrations = registrations
        self._accounts: PjsipAccounts | None = None
        self._log_writer = _LogForwarder()
        self.calls: dict[str, _PjCall] = {}
        #: When the last call ended (time.monotonic()): shutdown lets its transactions finish.
        self._last_call_end = float("-inf")
        self._retired: list[_PjCall] = []
        self._deferred: list[_PjCall] = []
        self.bound_port: int = settings.port
        self._waker = FrameWaker()
        self._codec_ids: set[str] = set()
        self._enabled: tuple[str, ...] = ()
        self._wakeup: asyncio.Future[None] | None = None
        #: Where sip.stun_server answers from (None without one).
        self._stun_server: tuple[str, int] | None = None
        self._nat_networks = nat_networks(settings.nat_networks)

    # -- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the library, the UDP transport and the account; then register the
        ``[[sip.accounts]]`` (their outcome comes later, to ``Registrations``)."""
        self._stun_server = stun_probe.resolve_server(self.settings.stun_server)
        if self._stun_server is not None:
            await stun_probe.check_server(self._stun_server, self.settings.host)
        try:
            self._start()
        except pj.Error as exc:
            raise EngineStartError(
                f"cannot start SIP on {self.settings.host}:{self.settings.port}: {exc.reason}"
            ) from None
        if self._accounts is not None:
            await self._accounts.resolve_registrars()
            self._accounts.start()

    def _start(self) -> None:
        BridgePort.waker = self._waker
        ep = pj.Endpoint()
        with _stdout_silenced():
            # Before libInit applies our log config, pjlib prints its start-up chatter to
            # stdout, which would break JSON log output.
            ep.libCreate()
        self._ep = ep
        cfg = pj.EpConfig()
        ua = cfg.uaConfig
        ua.threadCnt = 0
        ua.mainThreadOnly = True
        ua.maxCalls = PJSUA_CALL_SLOTS
        ua.userAgent = "voice-agent"
        if self._stun_server is not None:
            # Media only, as on baresip: each call's RTP and RTCP sockets ask it for their
            # public address (pjsua's create_rtp_rtcp_sock), which the SDP then names. The
            # SIP transport keeps sip.public_host or its own address (every account says
            # sipStunUse=DISABLED): a STUN-mapped SIP port is only right behind a NAT that
            # keeps it, which sip.public_host already covers.
            ua.stunServer.append(f"{self._stun_server[0]}:{self._stun_server[1]}")
            ua.stunTryIpv6 = False
        logc = cfg.logConfig
        logc.level = _PJ_LOG_LEVEL
        logc.consoleLevel = _PJ_LOG_LEVEL
        logc.decor = 0
        logc.writer = self._log_writer
        med = cfg.medConfig
        # The conference bridge's clock: 16 kHz when G.722 may be negotiated, so a wideband
        # call stays wideband through it (G.711 ports are resampled by the bridge).
        rate = 16000 if "G722" in self.settings.codecs else 8000
        med.clockRate = rate
        med.sndClockRate = rate
        med.channelCount = 1
        med.audioFramePtime = 20
        med.noVad = True
        med.ecTailLen = 0
        ep.libInit(cfg)
        ep.audDevManager().setNullDev()
        _full_scale_g722()

        tcfg = pj.TransportConfig()
        tcfg.port = self.settings.port
        tcfg.boundAddress = self.settings.host
        if self.settings.public_host:
            tcfg.publicAddress = self.settings.public_host
        self._log_writer.muted = True
        try:
            transport_id = ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, tcfg)
        finally:
            self._log_writer.muted = False
        self.bound_port = transport_port(transport_id)
        transports = {"udp": transport_id}
        registrations = self._registrations
        if registrations is not None and any(
            state.settings.transport == "tcp" for state in registrations.accounts.values()
        ):
            # Registrations over TCP: a listener on the same port number as UDP.
            tcfg.port = self.bound_port
            transports["tcp"] = ep.transportCreate(pj.PJSIP_TRANSPORT_TCP, tcfg)
        tls = self.settings.tls
        if tls.cert_file or (
            registrations is not None
            and any(state.settings.transport == "tls" for state in registrations.accounts.values())
        ):
            transports["tls"] = ep.transportCreate(pj.PJSIP_TRANSPORT_TLS, self._tls_config())
        ep.libStart()
        self._codec_ids = {codec.codecId for codec in ep.codecEnum2()}
        self._enable_codecs(self.settings.codecs)

        acfg = pj.AccountConfig()
        host = self.settings.public_host or self.settings.host
        acfg.idUri = f"sip:{self.settings.user}@{host}:{self.bound_port}"
        rtp = acfg.mediaConfig.transportConfig
        rtp.port = self.settings.rtp_port
        rtp.portRange = self.settings.rtp_port_range
        rtp.boundAddress = self.settings.host
        if self.settings.public_host:
            rtp.publicAddress = self.settings.public_host
        apply_srtp(acfg, self.settings.srtp)
        acfg.natConfig.sipStunUse = pj.PJSUA_STUN_USE_DISABLED
        account = AnsweringAccount(self._incoming)
        account.create(acfg, True)
        self._account = account
        self._account_config = acfg
        if "tls" in transports and tls.cert_file:
            tls_port = transport_port(transports["tls"])
            self._sips_contact = f"<sips:{self.settings.user}@{host}:{tls_port}>"
        if registrations is not None and registrations.accounts:
            self._accounts = PjsipAccounts(
                registrations,
                self._incoming,
                transports,
                self.settings.public_host,
                self.settings.srtp,
            )
        self._gate = PjsipRequestGate(self.policy, self._refusals.answered, self._before_new_call)

    def _tls_config(self) -> pj.TransportConfig:
        tls = self.settings.tls
        cfg = pj.TransportConfig()
        cfg.port = tls.port
        cfg.boundAddress = self.settings.host
        if self.settings.public_host:
            cfg.publicAddress = self.settings.public_host
        tc = cfg.tlsConfig
        tc.method = pj.PJSIP_TLSV1_2_METHOD
        tc.CaListFile = tls.ca_file
        tc.certFile = tls.cert_file
        tc.privKeyFile = tls.key_file
        tc.verifyServer = tls.verify_server
        return cfg

    def _enable_codecs(self, codecs: tuple[str, ...]) -> None:
        """Only ``codecs`` enabled, in that order (the wheel would rank speex first)."""
        ep = self._ep
        assert ep is not None
        if codecs == self._enabled:
            return
        wanted = {_PJ_CODECS[name]: 255 - rank for rank, name in enumerate(codecs)}
        for codec_id in self._codec_ids:
            ep.codecSetPriority(codec_id, wanted.get(codec_id, 0))
        self._enabled = codecs

    def _before_new_call(self, request: SipRequest, offer_sdp: str) -> None:
        """The request gate lets a new INVITE through to pjsua (loop thread, before pjsua
        reads it): retired calls go first, and the codec and Contact the call will use are
        chosen."""
        self._destroy_retired()
        self._enable_codecs(codecs_for_offer(offer_sdp, self.settings.codecs))
        self._choose_contact(request)

    def _choose_contact(self, request: SipRequest) -> None:
        """A ``sips:`` Contact for a ``sips:`` call over TLS, pjsua's own otherwise.

        pjsua answers a call over TLS with a ``sip:`` Contact (the wheel's
        ``PJSUA_SECURE_SCHEME``), which a caller that dialled ``sips:`` refuses (480). Only
        a forced Contact says otherwise, and it is the account's: so the engine's own
        account is given it (``Account.modify``) right before pjsua reads a ``sips:``
        INVITE, and loses it before any other. pjsua copies it into the call's dialog as it
        reads the INVITE, right after this, on this thread.
        """
        account, cfg = self._account, self._account_config
        if account is None or cfg is None:
            return
        contact = self._sips_contact if wants_sips_contact(request) else ""
        if cfg.sipConfig.contactForced != contact:
            cfg.sipConfig.contactForced = contact
            account.modify(cfg)

    async def run(self) -> None:
        """Drive PJSIP from the loop: SIP events, retiring ended calls, waking call sessions.

        A pass runs when caller frames arrive (the media port's ``FrameWaker``: once per
        20 ms tick during calls, right after the frames) or after ``_IDLE_POLL_S`` without
        any, which is what keeps SIP going between calls.
        """
        ep = self._ep
        assert ep is not None, "start() first"
        loop = asyncio.get_running_loop()
        waker = self._waker
        loop.add_reader(waker.fileno(), self._on_frames)
        try:
            while True:
                waker.consume()
                ep.libHandleEvents(0)
                self._answer_deferred()
                for call in self.calls.values():
                    call.check_latch()
                if self._retired:
                    self._destroy_retired()
                self._wake_calls()
                wakeup = self._wakeup = loop.create_future()
                timer = loop.call_later(_IDLE_POLL_S, _resolve, wakeup)
                try:
                    await wakeup
                finally:
                    timer.cancel()
                    self._wakeup = None
        finally:
            loop.remove_reader(waker.fileno())

    def _wake_calls(self) -> None:
        # A copy: a listener carries the call's audio on at once, and what it decides (a
        # hang-up) can end a call, and so change the table, before the loop is done.
        for call in list(self.calls.values()):
            port = call.port
            if port is not None and port.inbound and call.listener is not None:
                call.listener.on_frames()

    def _on_frames(self) -> None:
        wakeup = self._wakeup
        if wakeup is not None:
            _resolve(wakeup)

    async def shutdown(self, timeout_s: float = 3.0) -> None:
        """End every call, wait for their disconnection, then destroy the library."""
        ep = self._ep
        if ep is None:
            return
        for call in list(self.calls.values()):
            call.end()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.calls and loop.time() < deadline:
            ep.libHandleEvents(0)
            await asyncio.sleep(_POLL_INTERVAL_S)
        for call in list(self.calls.values()):
            self._retire(call)
        # A call that just ended may still have a transaction finishing (a CANCELled INVITE's
        # 487 to ACK, a BYE's 200): keep the stack running until a second after the last
        # end, then destroy without pjsua's own fixed one-second wait.
        settle_until = loop.time() + (self._last_call_end + CALL_END_SETTLE_S - time.monotonic())
        while loop.time() < settle_until:
            ep.libHandleEvents(0)
            await asyncio.sleep(_POLL_INTERVAL_S)
        self._destroy_retired()
        if self._accounts is not None:
            if self._accounts.unregister():
                deadline = loop.time() + UNREGISTER_WAIT_S
                while self._accounts.pending() and loop.time() < deadline:
                    ep.libHandleEvents(0)
                    await asyncio.sleep(_POLL_INTERVAL_S)
            self._accounts.destroy()
            self._accounts = None
        if self._account is not None:
            self._account.shutdown()
            self._account = None
        if self._gate is not None:
            self._gate.close()
            self._gate = None
        gc.collect()
        # Calls, their last transactions and registrations are ended above, each waited
        # for: without NO_NETWORK, pjsua_destroy would sleep a fixed second on every stop.
        ep.libDestroy(pj.PJSUA_DESTROY_NO_NETWORK)
        self._ep = None
        BridgePort.waker = None
        self._waker.close()

    # -- calls -------------------------------------------------------------------------------
    def _incoming(self, pj_call_id: int, source_ip: str, body: str) -> None:
        assert self._account is not None
        call = _PjCall(self._account, pj_call_id, self._retire, source_ip, self._nat_networks)
        if body:
            call.guard_offer(body)
        self.calls[call.call_id] = call
        call.log.info("sip_invite", remote=call.remote_uri, local=call.local_uri)
        # Inside onIncomingCall pjsua still owns the INVITE: a final response sent from here
        # makes it free the cloned request twice for an INVITE without SDP (SIGABRT). Calls
        # answered or rejected now are queued and done right after libHandleEvents returns.
        call.defer_responses = True
        try:
            self._on_incoming(PjsipCall(call))
        finally:
            call.defer_responses = False
            if call.deferred:
                self._deferred.append(call)

    async def dial(
        self,
        uri: str,
        listener: CallListener,
        *,
        account: str = "",
        from_user: str = "",
    ) -> PjsipCall:
        """An outbound call (``agent.sip.engine.SipEngine.dial``): through the engine's own
        account, or a registering ``[[sip.accounts]]`` one (pjsua answers the trunk's digest
        challenge with its credentials)."""
        if self._ep is None or self._account is None:
            raise DialError("the SIP engine is not running")
        pj_account: pj.Account | None = self._account
        if account:
            pj_account = self._accounts.account(account) if self._accounts is not None else None
            if pj_account is None:
                raise DialError(f"no [[sip.accounts]] account {account!r} is registered")
        assert pj_account is not None
        local = ""
        if from_user:
            identity = pj_account.getInfo().uri
            host = identity.rpartition("@")[2] if "@" in identity else identity.split(":", 1)[1]
            scheme = identity.split(":", 1)[0]
            local = f"{scheme}:{from_user}@{host}"
        # As before a new INVITE is taken: retired calls go first (their slots), and the
        # offer carries every configured codec.
        self._destroy_retired()
        self._enable_codecs(self.settings.codecs)
        call = _PjCall(
            pj_account, pj.PJSUA_INVALID_ID, self._retire, nat_networks=self._nat_networks
        )
        call.listener = listener
        self._log_writer.muted = True
        try:
            call.place(uri, local)
        except pj.Error as exc:
            call.listener = None
            if call.thisown:
                pj.Call.__swig_destroy__(call)
                call.thisown = False
            raise DialError(f"INVITE not sent: {exc.reason}") from None
        finally:
            self._log_writer.muted = False
        self.calls[call.call_id] = call
        call.log.info("sip_dial", remote=uri, local=call.local_uri)
        return PjsipCall(call)

    def _answer_deferred(self) -> None:
        deferred, self._deferred = self._deferred, []
        for call in deferred:
            call.send_deferred()

    def _retire(self, call: _PjCall) -> None:
        if self.calls.pop(call.call_id, None) is not None:
            self._retired.append(call)
            self._last_call_end = time.monotonic()

    def _destroy_retired(self) -> None:
        # Outside the PJSUA2 callback that reported the disconnection: safe to drop the call.
        # Also run by the request gate before pjsua takes a new INVITE: a pj.Call deleted
        # after its slot went to a new call would clear that call's link to its object and
        # hang it up (~Call acts on the slot number, whoever holds it by then).
        retired, self._retired = self._retired, []
        for call in retired:
            if call.port is not None:
                # The call's frame counters and RTP statistics, once, at its end (bench/
                # reads this line).
                call.log.info("media_stats", **call.port.stats(), **call.rtp_stats)
            call.destroy()
        retired.clear()

    @property
    def handle(self) -> Any:
        """The raw ``pj.Endpoint`` (for diagnostics and tests)."""
        return self._ep
