"""One SIP call as PJSUA2 sees it: :class:`PjsipCall`, the engine interface's call.

``_PjCall`` is the PJSUA2 object (its callbacks); ``PjsipCall`` is what the rest of the agent
holds (``agent.sip.engine.EngineCall``). In poll mode every callback runs on the asyncio loop
thread (inside ``libHandleEvents``), so the listener may touch asyncio objects directly.
Callbacks never let an exception escape into SWIG: it would be printed and lost, and could
leave PJSIP mid-update.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from ipaddress import IPv4Network
from typing import Any

import pjsua2 as pj
import structlog

from agent.observe.ids import new_call_id
from agent.sip.engine import CallListener, FrameSource, SipCommandError, reinvite_answered
from agent.sip.message import sdp_audio_address
from agent.sip.pjsip.media_port import BridgePort
from agent.sip.rtp_filter import expected_source, find_udp_socket, restrict_source, split_address


def rtp_figures(stat: pj.StreamStat) -> dict[str, float | int]:
    """A stream's RTP quality for the call record and the ``media_stats`` line: what we
    received (loss, jitter as RFC 3550 computes it, discards, reordering), what the far end
    reported of ours in its RTCP, and the jitter buffer's own losses."""
    rx, tx = stat.rtcp.rxStat, stat.rtcp.txStat
    received, lost = int(rx.pkt), int(rx.loss)
    return {
        "rx_packets": received,
        "rx_lost": lost,
        "rx_loss_pct": round(100 * lost / (received + lost), 2) if received + lost else 0.0,
        "rx_jitter_ms_mean": round(rx.jitterUsec.mean / 1000, 2),
        "rx_jitter_ms_max": round(rx.jitterUsec.max / 1000, 2),
        "rx_discarded": int(rx.discard),
        "rx_reordered": int(rx.reorder),
        "rx_duplicated": int(rx.dup),
        "tx_packets": int(tx.pkt),
        "tx_lost_reported": int(tx.loss),
        "tx_jitter_ms_reported": round(tx.jitterUsec.mean / 1000, 2),
        "jbuf_lost": int(stat.jbuf.lost),
        "jbuf_delay_ms_mean": int(stat.jbuf.avgDelayMsec),
    }


def _sip_header(name: str, value: str) -> pj.SipHeader:
    header = pj.SipHeader()
    header.hName = name
    header.hValue = value
    return header


class _PjCall(pj.Call):
    """The PJSUA2 call object, owned by :class:`~agent.sip.pjsip.engine.PjsipEngine`."""

    thisown: bool  # SWIG's: whether Python owns (and may delete) the C++ object

    def __init__(
        self,
        account: pj.Account,
        call_id: int,
        on_retire: Any,
        source_ip: str = "",
        nat_networks: tuple[IPv4Network, ...] = (),
    ) -> None:
        super().__init__(account, call_id)
        #: Where the INVITE came from: the only address a NAT-ed caller's RTP may latch onto.
        self.source_ip = source_ip
        #: SDP addresses that mark the far end as behind NAT (``sip.nat_networks``).
        self._nat_networks = nat_networks
        self.call_id = new_call_id()
        #: A call we place (``call_id`` INVALID: ``place`` makes it): its info comes then.
        self.outgoing = call_id == pj.PJSUA_INVALID_ID
        self.far_end_responded = not self.outgoing
        self.sip_call_id: str = ""
        self.remote_uri: str = ""
        self.local_uri: str = ""
        if not self.outgoing:
            self._read_info()
        self.codec: str | None = None
        self.port: BridgePort | None = None
        #: The latest RTP figures (``rtp_figures``): kept, since the stream goes with the call.
        self.rtp_stats: dict[str, float | int] = {}
        self.source: FrameSource | None = None
        self.listener: CallListener | None = None
        self.disconnected = False
        self.confirmed = False
        #: The far end holds the call (its last offer was sendonly or inactive).
        self.held = False
        #: We hold the call (our re-INVITE with a=sendonly was answered).
        self.local_held = False
        #: Waiting for the answer to our hold's or resume's re-INVITE.
        self._reinvite_answer: asyncio.Future[None] | None = None
        self.log = structlog.get_logger("sip").bind(
            call_id=self.call_id, sip_call_id=self.sip_call_id
        )
        self._ringing_reported = 0
        self._on_retire = on_retire
        self._audio: pj.AudioMedia | None = None
        #: Media index and socket still waiting to latch onto the caller's exact RTP source.
        self._unlatched: tuple[int, int] | None = None
        #: While set (inside onIncomingCall), responses are queued in ``deferred``.
        self.defer_responses = False
        self.deferred: list[Callable[[], None]] = []

    def _read_info(self) -> None:
        info = self.getInfo()
        self.sip_call_id = info.callIdString
        self.remote_uri = info.remoteUri
        self.local_uri = info.localUri

    def place(self, uri: str, local_uri: str) -> None:
        """Send the INVITE of a call we place (``local_uri``: From, "" = the account's);
        raises ``pj.Error`` when pjsua cannot."""
        prm = pj.CallOpParam(True)
        if local_uri:
            prm.txOption.localUri = local_uri
        self.makeCall(uri, prm)
        self._read_info()
        self.log = self.log.bind(sip_call_id=self.sip_call_id)

    # -- commands (loop thread) -------------------------------------------------------------
    def ring(self) -> None:
        self._respond(180)

    def answer_ok(self) -> None:
        self._respond(200)

    def reject(self, code: int, reason: str, retry_after_s: int | None = None) -> None:
        """Final error response to an unanswered INVITE (e.g. 503 with Retry-After)."""
        prm = pj.CallOpParam()
        prm.statusCode = code
        prm.reason = reason
        if retry_after_s is not None:
            prm.txOption.headers.append(_sip_header("Retry-After", str(retry_after_s)))
        # answer() with a final error code rejects the INVITE and keeps our headers; hangup()
        # drops them when no provisional response was sent yet.
        self._safe(f"reject {code}", lambda: self.answer(prm))

    def end(self) -> None:
        """BYE an answered call, or 603 an unanswered one; harmless when already ended."""
        if self.disconnected:
            return
        # The stream is gone by the time the disconnection is reported: take its figures now.
        self.snapshot_rtp()
        prm = pj.CallOpParam()
        prm.statusCode = pj.PJSIP_SC_DECLINE
        self._safe("hangup", lambda: self.hangup(prm))

    def transfer(self, uri: str) -> None:
        """Blind transfer: send REFER to ``uri``; progress comes to ``on_transfer_status``."""
        if self.disconnected:
            raise SipCommandError("the call has ended")
        try:
            self.xfer(uri, pj.CallOpParam(True))
        except pj.Error as exc:
            raise SipCommandError(f"REFER not sent: {exc.reason}") from None
        self.log.info("sip_transfer_sent", refer_to=uri)

    async def set_hold(self, hold: bool) -> None:
        """Our re-INVITE: a=sendonly (hold) or a=sendrecv (resume); returns once answered."""
        verb = "hold" if hold else "resume"
        if self.disconnected:
            raise SipCommandError("the call has ended")
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reinvite_answer = answer
        try:
            prm = pj.CallOpParam(True)
            if hold:
                self.setHold(prm)
            else:
                prm.opt.flag = pj.PJSUA_CALL_UNHOLD
                self.reinvite(prm)
        except pj.Error as exc:
            self._reinvite_answer = None
            raise SipCommandError(f"{verb} not sent: {exc.reason}") from None
        try:
            await reinvite_answered(answer, verb)
        finally:
            self._reinvite_answer = None
        self.local_held = hold
        self.log.info("sip_local_hold" if hold else "sip_local_resume")

    def _reinvite_answered(self, error: str = "") -> None:
        answer = self._reinvite_answer
        if answer is None or answer.done():
            return
        if error:
            answer.set_exception(SipCommandError(error))
        else:
            answer.set_result(None)

    def send_dtmf(self, digits: str) -> None:
        """Send ``digits`` as RFC 4733 telephone-events (the peer must have offered them)."""
        if self.disconnected:
            raise SipCommandError("the call has ended")
        prm = pj.CallSendDtmfParam()
        prm.method = pj.PJSUA_DTMF_METHOD_RFC2833
        prm.digits = digits
        try:
            self.sendDtmf(prm)
        except pj.Error as exc:
            raise SipCommandError(f"DTMF not sent: {exc.reason}") from None

    def received_rtp_packets(self) -> int | None:
        """RTP packets received on the call's audio so far; None while none is expected
        (no active audio, or the far end holds the call: inactive or recvonly)."""
        if self.disconnected:
            return None
        try:
            info = self.getInfo()
            for index, media in enumerate(info.media):
                if media.type != pj.PJMEDIA_TYPE_AUDIO:
                    continue
                if media.status != pj.PJSUA_CALL_MEDIA_ACTIVE or self.local_held:
                    return None  # on hold (either side's): nothing need come
                if not media.dir & pj.PJMEDIA_DIR_DECODING:
                    return None
                stat = self.getStreamStat(index)
                self.rtp_stats = rtp_figures(stat)
                return int(stat.rtcp.rxStat.pkt)
        except pj.Error:
            return None
        return None

    def snapshot_rtp(self) -> None:
        """Keep the audio stream's RTP figures now, while the stream is still there."""
        with contextlib.suppress(pj.Error):
            info = self.getInfo()
            for index, media in enumerate(info.media):
                if (
                    media.type == pj.PJMEDIA_TYPE_AUDIO
                    and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE
                ):
                    self.rtp_stats = rtp_figures(self.getStreamStat(index))
                    return

    def _respond(self, code: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        self._safe(f"answer {code}", lambda: self.answer(prm))

    def send_deferred(self) -> None:
        """Send the responses queued while pjsua was still inside onIncomingCall."""
        actions, self.deferred = self.deferred, []
        for action in actions:
            action()

    def _safe(self, what: str, action: Any) -> None:
        if self.defer_responses:
            self.deferred.append(lambda: self._safe(what, action))
            return
        if self.disconnected:
            return
        try:
            action()
        except pj.Error as exc:
            self.log.warning("sip_command_failed", command=what, reason=exc.info())

    # -- PJSUA2 callbacks (loop thread, inside libHandleEvents) ------------------------------
    def onCallState(self, prm: pj.OnCallStateParam) -> None:
        try:
            info = self.getInfo()
            if self.outgoing:
                self._outgoing_state(prm, info)
            if info.state == pj.PJSIP_INV_STATE_CONFIRMED and not self.confirmed:
                self.confirmed = True
                if self.listener is not None:
                    self.listener.on_confirmed()
                return
            if info.state != pj.PJSIP_INV_STATE_DISCONNECTED or self.disconnected:
                return
            self.disconnected = True
            self._reinvite_answered("the call ended")
            self._detach_media()
            self.log.info("sip_call_ended", code=int(info.lastStatusCode), reason=info.lastReason)
            if self.listener is not None:
                self.listener.on_disconnected(int(info.lastStatusCode), info.lastReason)
            self._on_retire(self)
        except Exception:
            self.log.exception("sip_callback_failed", callback="onCallState")

    def _outgoing_state(self, prm: pj.OnCallStateParam, info: pj.CallInfo) -> None:
        """What a call we placed learns: a response of the far end (not a timer's or the
        transport's), and its ringing (180) or early media (183), each reported once."""
        event = prm.e
        if (
            event.type == pj.PJSIP_EVENT_TSX_STATE
            and event.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG
        ) or event.type == pj.PJSIP_EVENT_RX_MSG:
            self.far_end_responded = True
        code = int(info.lastStatusCode)
        if info.state == pj.PJSIP_INV_STATE_EARLY and code in (180, 183):
            if code == self._ringing_reported:
                return
            self._ringing_reported = code
            self.far_end_responded = True
            self.log.info("sip_call_progress", code=code)
            if self.listener is not None:
                self.listener.on_progress(code, str(info.lastReason))

    def onDtmfDigit(self, prm: pj.OnDtmfDigitParam) -> None:
        # One call per key press, for RFC 4733 events and SIP INFO (application/dtmf-relay)
        # alike: pjsua 2.15 answers such an INFO itself and reports it here.
        try:
            method = "info" if prm.method == pj.PJSUA_DTMF_METHOD_SIP_INFO else "rfc4733"
            if self.listener is not None:
                self.listener.on_dtmf(str(prm.digit), method)
        except Exception:
            self.log.exception("sip_callback_failed", callback="onDtmfDigit")

    def onCallTransferStatus(self, prm: pj.OnCallTransferStatusParam) -> None:
        # REFER progress: the 202 (reported as 100 "Accepted"), then each NOTIFY's sipfrag.
        try:
            prm.cont = True
            code, final = int(prm.statusCode), bool(prm.finalNotify)
            self.log.info("sip_transfer_status", code=code, reason=prm.reason, final=final)
            if self.listener is not None:
                self.listener.on_transfer_status(code, str(prm.reason), final)
        except Exception:
            self.log.exception("sip_callback_failed", callback="onCallTransferStatus")

    def onCallTransferRequest(self, prm: pj.OnCallTransferRequestParam) -> None:
        # The request gate answers a far end's REFER before pjsua sees it; should one get
        # through, never dial where a caller says (toll fraud).
        prm.statusCode = pj.PJSIP_SC_FORBIDDEN
        # The refusal stands whatever happens to the log line; nothing may escape into SWIG.
        with contextlib.suppress(Exception):
            self.log.warning("sip_refer_refused", refer_to=str(prm.dstUri)[:200])

    def onCallReplaceRequest(self, prm: pj.OnCallReplaceRequestParam) -> None:
        prm.statusCode = pj.PJSIP_SC_FORBIDDEN

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            self._attach_media()
            # The answer to our own re-INVITE (hold, resume) renegotiated the media.
            self._reinvite_answered()
        except Exception:
            self.log.exception("sip_callback_failed", callback="onCallMediaState")

    def onCallTsxState(self, prm: pj.OnCallTsxStateParam) -> None:
        try:
            event = prm.e
            if (
                self.outgoing
                and event.type == pj.PJSIP_EVENT_TSX_STATE
                and event.body.tsxState.type == pj.PJSIP_EVENT_RX_MSG
            ):
                # A call we place: a 100 Trying changes no call state, only its
                # transaction's; it still means somebody is there.
                self.far_end_responded = True
            # A refused re-INVITE of ours (hold, resume) leaves the media as it was: no media
            # state comes, the final response here says why.
            if self._reinvite_answer is None or event.type != pj.PJSIP_EVENT_TSX_STATE:
                return
            tsx = prm.e.body.tsxState.tsx
            if tsx.method == "INVITE" and tsx.role == pj.PJSIP_ROLE_UAC and tsx.statusCode >= 300:
                self._reinvite_answered(f"re-INVITE refused: {tsx.statusCode} {tsx.statusText}")
        except Exception:
            self.log.exception("sip_callback_failed", callback="onCallTsxState")

    def onStreamDestroyed(self, prm: pj.OnStreamDestroyedParam) -> None:
        # The stream's RTP statistics, read while it still exists (for media_stats).
        try:
            self.rtp_stats = rtp_figures(self.getStreamStat(prm.streamIdx))
        except Exception:
            self.log.debug("rtp_stats_unavailable")

    # -- media -------------------------------------------------------------------------------
    def _attach_media(self) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            # pjsua answers a far end's sendonly re-INVITE with recvonly and reports remote
            # hold; an inactive one it may report as active with no direction at all. Either
            # way nothing of ours may be sent: that is the hold. Sending again is the resume.
            self._far_end_holds(
                media.status == pj.PJSUA_CALL_MEDIA_REMOTE_HOLD
                or (
                    media.status == pj.PJSUA_CALL_MEDIA_ACTIVE
                    and not media.dir & pj.PJMEDIA_DIR_ENCODING
                )
            )
            if media.status not in (pj.PJSUA_CALL_MEDIA_ACTIVE, pj.PJSUA_CALL_MEDIA_LOCAL_HOLD):
                continue  # on our hold the stream still sends: the music on hold
            audio = self.getAudioMedia(index)
            stream = self.getStreamInfo(index)
            if self.port is None:
                self.port = BridgePort(f"bridge-{self.call_id}", int(stream.codecClockRate))
                if self.source is not None:
                    self.port.source = self.source
            # Re-INVITEs recreate the stream: connect again in both directions.
            audio.startTransmit(self.port)
            self.port.startTransmit(audio)
            self._audio = audio
            self._guard_sources(index)
            codec = stream.codecName.upper()
            if codec != self.codec:
                self.codec = codec
                self.log.info("sip_media_active", codec=codec)
                if self.listener is not None:
                    self.listener.on_media(codec, int(stream.codecClockRate))
            return

    def _far_end_holds(self, held: bool) -> None:
        if held == self.held:
            return
        self.held = held
        self.log.info("sip_remote_hold" if held else "sip_remote_resume")
        if self.listener is not None:
            self.listener.on_hold(held)

    def guard_offer(self, sdp: str) -> None:
        """Filter the call's RTP sockets as soon as the INVITE's offer is known.

        Before pjsua starts the stream: a stranger's packet arriving between the start of
        the stream and the answer would otherwise be latched onto at once.
        """
        remote = sdp_audio_address(sdp)
        if remote is not None:
            self._restrict_sources(0, remote, (remote[0], remote[1] + 1))

    def _guard_sources(self, index: int) -> None:
        """Let the call's RTP and RTCP sockets receive only from the caller's media address.

        pjmedia would otherwise move its remote address to any source that sends it a few
        packets while the caller pauses, and play the agent's audio there (RTP hijack).
        """
        stream = self.getStreamInfo(index)
        rtp = split_address(stream.remoteRtpAddress)
        if rtp is not None:
            self._restrict_sources(index, rtp, split_address(stream.remoteRtcpAddress))

    def _restrict_sources(
        self, index: int, rtp: tuple[str, int], rtcp: tuple[str, int] | None
    ) -> None:
        try:
            transport = self.getMedTransportInfo(index)
        except pj.Error:
            return
        self._unlatched = None
        pairs = ((rtp, transport.localRtpName, True), (rtcp, transport.localRtcpName, False))
        for remote, local_text, is_rtp in pairs:
            local = split_address(local_text)
            if remote is None or local is None:
                continue
            fd = find_udp_socket(local[1])
            if fd is None:
                self.log.warning("rtp_guard_unavailable", local=local_text)
                continue
            ip, port = expected_source(
                remote[0], remote[1], self.source_ip or remote[0], self._nat_networks
            )
            restrict_source(fd, ip, port)
            if port is None and is_rtp:
                self._unlatched = (index, fd)
            if is_rtp:
                self.log.debug("rtp_source_expected", address=f"{ip}:{port or '*'}")

    def check_latch(self) -> None:
        """Caller behind NAT: once its first RTP arrived, accept that exact source only."""
        if self._unlatched is None or self.disconnected:
            return
        index, fd = self._unlatched
        try:
            source = split_address(self.getMedTransportInfo(index).srcRtpName)
        except pj.Error:
            return
        if source is None:
            return
        self._unlatched = None
        restrict_source(fd, *source)
        self.log.info("rtp_source_latched", address=f"{source[0]}:{source[1]}")

    def _detach_media(self) -> None:
        port, audio = self.port, self._audio
        self._audio = None
        if port is None:
            return
        for source, sink in ((audio, port), (port, audio)):
            if source is None or sink is None:
                continue
            # The stream may already be gone with the call.
            with contextlib.suppress(pj.Error):
                source.stopTransmit(sink)

    def destroy_port(self) -> None:
        """Delete the media port now, on the loop thread (never leave it to the GC)."""
        self._detach_media()
        port, self.port = self.port, None
        if port is not None:
            port.close()

    def destroy(self) -> None:
        """Delete the PJSUA2 call object now, on the loop thread, after its disconnection.

        Left to the garbage collector, a call kept alive by a reference cycle would be
        deleted at some later moment, and pjsua2's destructor hangs up whatever call then
        holds the same call slot. Deleting it here makes the moment deterministic; the
        Python wrapper stays behind, disowned, and must not be used again.
        """
        self.destroy_port()
        self.listener = None
        if self.thisown:
            pj.Call.__swig_destroy__(self)
            self.thisown = False


class PjsipCall:
    """A call on the PJSIP engine (``agent.sip.engine.EngineCall``)."""

    def __init__(self, pj_call: _PjCall) -> None:
        self._call = pj_call
        self.call_id = pj_call.call_id
        self.sip_call_id = pj_call.sip_call_id
        self.remote_uri = pj_call.remote_uri
        self.local_uri = pj_call.local_uri
        self.source_ip = pj_call.source_ip
        self.log = pj_call.log

    @property
    def far_end_responded(self) -> bool:
        return self._call.far_end_responded

    @property
    def listener(self) -> CallListener | None:
        return self._call.listener

    @listener.setter
    def listener(self, listener: CallListener | None) -> None:
        self._call.listener = listener

    @property
    def codec(self) -> str | None:
        return self._call.codec

    @property
    def disconnected(self) -> bool:
        return self._call.disconnected

    def ring(self) -> None:
        self._call.ring()

    def answer(self) -> None:
        self._call.answer_ok()

    def reject(self, code: int, reason: str, retry_after_s: int | None = None) -> None:
        self._call.reject(code, reason, retry_after_s)

    def hang_up(self) -> None:
        self._call.end()

    def transfer(self, uri: str) -> None:
        self._call.transfer(uri)

    async def hold(self) -> None:
        await self._call.set_hold(True)

    async def resume(self) -> None:
        await self._call.set_hold(False)

    def send_dtmf(self, digits: str) -> None:
        self._call.send_dtmf(digits)

    def take_frames(self) -> list[bytes]:
        port = self._call.port
        if port is None or not port.inbound:
            return []
        inbound = port.inbound
        frames = []
        while inbound:
            frames.append(inbound.popleft())
        return frames

    def play_from(self, source: FrameSource) -> None:
        self._call.source = source
        if self._call.port is not None:
            self._call.port.source = source

    def received_rtp_packets(self) -> int | None:
        return self._call.received_rtp_packets()

    def rtp_stats(self) -> dict[str, float | int]:
        if not self._call.disconnected:
            self._call.snapshot_rtp()
        return dict(self._call.rtp_stats)
