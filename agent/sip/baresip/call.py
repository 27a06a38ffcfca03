"""One SIP call on baresip: :class:`BaresipCall`, the engine interface's call.

It wraps a ``baresip.Call``. Every method and callback runs on the event loop thread; the
binding's commands are coroutines, so the interface's synchronous commands start them as
tasks (``_spawn``) and report failures in the log, as PJSIP's do. State comes only from the
stack's events (``_on_event``): established on the ACK, closed with its reason, far-end hold
and resume, renegotiated SDP (the RTP source filter follows the new address).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable, Coroutine
from ipaddress import IPv4Network
from typing import Any

import baresip
import structlog
from baresip import BaresipError, Event, StackEvent, TransferFailed
from baresip.errors import split_status
from baresip.stats import CallStats

from agent.observe.ids import new_call_id
from agent.sip.baresip import native
from agent.sip.baresip.latch import MediaLatch
from agent.sip.baresip.media import AudioPump
from agent.sip.baresip.source import StackAudio
from agent.sip.engine import CallListener, FrameSource, SipCommandError, reinvite_answered
from agent.sip.message import sipfrag_status
from agent.sip.rtp_filter import expected_source, restrict_source

#: A REFER whose outcome has not come in this long is reported failed (the call stays).
TRANSFER_TIMEOUT_S = 30.0
#: No re-INVITE goes while another offer is in flight: tried again this often.
HOLD_RETRIES = 5
HOLD_RETRY_S = 0.2
_DTMF = "0123456789*#ABCD"
#: One digit as the binding sends it: pressed ~100 ms, then 120 ms of spacing.
_DIGIT_S = 0.25


def close_code(text: str, established: bool, rejected: int | None) -> int:
    """The SIP status a call ended with, from the stack's close reason.

    The binding reports reasons, not codes: a BYE and a CANCEL both read "Connection reset
    by peer", told apart by whether the call was established.
    """
    if rejected is not None:
        return rejected
    status, _ = split_status(text)
    if status is not None and not established:
        return status  # a call we placed, refused ("486 Busy Here")
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return 408
    if "reset by peer" in lowered:
        return 200 if established else 487
    if established or "transfered" in lowered:
        return 200
    if "busy" in lowered:
        return 486
    return 500


class BaresipCall:
    """A call on the baresip engine (``agent.sip.engine.EngineCall``)."""

    def __init__(
        self,
        call: baresip.Call,
        executor: native.ReThreadExecutor,
        on_ended: Callable[[BaresipCall], None],
        *,
        local_uri: str = "",
        on_call_id: Callable[[BaresipCall], None] | None = None,
        sdp_address: str = "",
        stun_source: tuple[str, int] | None = None,
        nat_networks: tuple[IPv4Network, ...] = (),
    ) -> None:
        """``local_uri`` (a call we placed): our From. ``on_call_id``: told once the SIP
        Call-ID of a call we placed is known (its first event carries it)."""
        self._call = call
        #: The address our SDP names instead of the local one (sip.public_host), or "".
        self._sdp_address = sdp_address
        #: The STUN server's address, whose keepalive answers the RTP filter lets through.
        self._stun_also = (stun_source,) if stun_source is not None else ()
        #: SDP addresses that mark the far end as behind NAT (``sip.nat_networks``).
        self._nat_networks = nat_networks
        #: The latest RTCP snapshot (live quality while the call runs).
        self._rtcp: CallStats | None = None
        call.on_rtcp(self._on_rtcp)
        self._executor = executor
        self._on_ended = on_ended
        self.call_id = new_call_id()
        self.sip_call_id: str = call.call_id or ""
        self.remote_uri: str = call.peer or ""
        self.local_uri: str = local_uri or call.headers.get("To", "")
        self.source_ip = ""
        self.listener: CallListener | None = None
        self.outgoing = bool(local_uri)
        self.far_end_responded = not self.outgoing
        self._on_call_id = on_call_id
        self.log = structlog.get_logger("sip").bind(
            call_id=self.call_id, sip_call_id=self.sip_call_id
        )
        self._latch = MediaLatch(executor, self.log, self._stun_also)
        self.pump: AudioPump | None = None
        self._source: FrameSource | None = None
        self._codec: str | None = None
        self._rate = 0
        self._established = False
        self._confirmed_pending = False
        self._disconnected = False
        self._rejected: int | None = None
        self._held = False
        #: We hold the call (our re-INVITE with a=sendonly was answered).
        self._local_held = False
        #: Waiting for the answer to our hold's or resume's re-INVITE.
        self._reinvite_answer: asyncio.Future[None] | None = None
        self._info_digits = 0
        self._transfer_final = True
        self._tasks: set[asyncio.Task[Any]] = set()
        self.on_media_ready: Callable[[BaresipCall], None] | None = None
        call.on(self._on_event)
        call.on_dtmf(self._on_dtmf)

    # -- the interface ------------------------------------------------------------------------
    @property
    def codec(self) -> str | None:
        return self._codec

    @property
    def disconnected(self) -> bool:
        return self._disconnected

    def ring(self) -> None:
        # baresip sent 180 Ringing itself, before the call reached us.
        pass

    def answer(self) -> None:
        self._spawn("answer", self._answer())

    def reject(self, code: int, reason: str, retry_after_s: int | None = None) -> None:
        headers = (("Retry-After", str(retry_after_s)),) if retry_after_s is not None else ()
        self._rejected = code
        self._spawn(f"reject {code}", self._reject(code, reason, headers))

    def hang_up(self) -> None:
        if self._disconnected:
            return
        self._spawn("hangup", self._call.hangup())

    def transfer(self, uri: str) -> None:
        if self._disconnected:
            raise SipCommandError("the call has ended")
        if not self._established:
            raise SipCommandError("the call is not established")
        if not self._transfer_final:
            raise SipCommandError("a transfer is already in progress")
        self._transfer_final = False
        self.log.info("sip_transfer_sent", refer_to=uri)
        self._spawn("transfer", self._transfer(uri))

    async def hold(self) -> None:
        await self._set_hold(True)

    async def resume(self) -> None:
        await self._set_hold(False)

    async def _set_hold(self, hold: bool) -> None:
        verb = "hold" if hold else "resume"
        if self._disconnected:
            raise SipCommandError("the call has ended")
        if not self._established:
            raise SipCommandError("the call is not established")
        answer: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._reinvite_answer = answer
        call_id = self.sip_call_id
        try:
            for _attempt in range(HOLD_RETRIES):
                status = await self._executor.run(
                    lambda: native.set_audio_direction(call_id, send_only=hold)
                )
                if status != native.REFRESH_BUSY:
                    break
                await asyncio.sleep(HOLD_RETRY_S)  # another offer in flight: its answer first
            if status == native.CALL_GONE:
                raise SipCommandError("the call has ended")
            if status == native.REFRESH_BUSY:
                raise SipCommandError(f"{verb} not sent: another re-INVITE stays in flight")
            if status != 0:
                raise SipCommandError(f"{verb} not sent: {os.strerror(status)}")
            await reinvite_answered(answer, verb)
        finally:
            self._reinvite_answer = None
        self._local_held = hold
        self.log.info("sip_local_hold" if hold else "sip_local_resume")

    def send_dtmf(self, digits: str) -> None:
        if self._disconnected:
            raise SipCommandError("the call has ended")
        if not digits or any(d not in _DTMF for d in digits.upper()):
            raise SipCommandError(f"not DTMF digits: {digits!r}")
        self._spawn("dtmf", self._send_digits(digits))

    async def _send_digits(self, digits: str) -> None:
        # The media clock sends the RFC 4733 packets the stack queues, and polls for them
        # only while digits may be queued: from now until a second after the last one.
        audio = self.pump.audio if self.pump is not None else None
        if isinstance(audio, StackAudio):
            audio.expect_events(_DIGIT_S * len(digits) + 1.0)
        await self._call.send_dtmf(digits)
        if isinstance(audio, StackAudio):
            audio.expect_events(1.0)

    def take_frames(self) -> list[bytes]:
        pump = self.pump
        return pump.take_frames() if pump is not None and pump.inbound else []

    def play_from(self, source: FrameSource) -> None:
        self._source = source
        if self.pump is not None:
            self.pump.source = source

    def received_rtp_packets(self) -> int | None:
        if self._disconnected or self._held or self._local_held or self.pump is None:
            # On hold (either side's) the far end need not send us anything.
            return None
        return self.pump.frames_in

    # -- commands (tasks on the loop) --------------------------------------------------------
    def _spawn(self, what: str, work: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.get_running_loop().create_task(self._logged(what, work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _logged(self, what: str, work: Awaitable[Any]) -> None:
        try:
            await work
        except baresip.StaleHandleError:
            pass  # the call ended meanwhile: nothing left to do
        except (BaresipError, ValueError, OSError) as exc:
            self.log.warning("sip_command_failed", command=what, reason=str(exc)[:200])

    async def _answer(self) -> None:
        call_id, address = self.sip_call_id, self._sdp_address

        def prepare() -> None:
            # Before the answer: the 200's SDP is built from the address.
            if address:
                native.set_sdp_address(call_id, address)
            native.reach_sips_target(call_id)

        await self._executor.run(prepare)
        await self._call.answer()
        await self._media_up()

    async def _reject(self, code: int, reason: str, headers: tuple[tuple[str, str], ...]) -> None:
        call_id = self.sip_call_id
        sent = await self._executor.run(
            lambda: native.reject_ringing(call_id, code, reason, headers)
        )
        if not sent and not self._disconnected:
            await self._call.reject()  # 486: the one final answer the binding itself gives

    async def _transfer(self, uri: str) -> None:
        try:
            await self._call.transfer(uri, timeout=TRANSFER_TIMEOUT_S)
        except TransferFailed as exc:
            code = exc.status or 500
            self._transfer_status(code, exc.reason or str(exc), True)
            return
        self._transfer_status(200, "OK", True)

    async def _media_up(self) -> None:
        """Learn the negotiated codec and sockets; filter the RTP; start the audio pump."""
        call_id = self.sip_call_id
        media = await self._executor.run(lambda: native.call_media(call_id))
        if media is None or self._disconnected:
            return
        if self._guard(media):
            self._latch.log = self.log  # bound to the Call-ID, which a call we place learns late
            await self._latch.follow(call_id, media, self.source_ip)
        else:
            self._latch.forget()
        if media.codec is None or not media.rate:
            return  # a late offer: known at the ACK
        if self._codec != media.codec:
            self._codec, self._rate = media.codec, media.rate
            self.log.info("sip_media_active", codec=media.codec, rate=media.rate)
            if self.pump is None:
                audio = StackAudio(self._call.audio, call_id)
                self.pump = AudioPump(audio, media.rate, self._frames)
                if self.outgoing:
                    # What the stack buffered since a 183 is the network's early media
                    # (ringback, announcements), not the callee: it never reaches the agent.
                    dropped = self.pump.discard_received()
                    if dropped:
                        self.log.info("early_media_discarded", frames=dropped)
                if self._source is not None:
                    self.pump.source = self._source
                if self.on_media_ready is not None:
                    self.on_media_ready(self)
            if self.listener is not None:
                self.listener.on_media(media.codec, media.rate)
        if self._confirmed_pending:
            self._confirm()

    def _guard(self, media: native.CallMedia) -> bool:
        """Let the call's RTP and RTCP sockets receive only from the caller's media address;
        True when the caller is behind NAT (``MediaLatch`` then follows its source).

        baresip takes RTP from anyone on the call's port and hands it up as the caller's
        audio; a kernel filter on the sockets keeps strangers out.
        """
        remote = media.remote_rtp
        if remote is None or media.rtp_fd < 0:
            self.log.warning("rtp_guard_unavailable")
            return False
        signalling = media.signalling[0] if media.signalling else remote[0]
        self.source_ip = signalling
        ip, port = expected_source(remote[0], remote[1], signalling, self._nat_networks)
        latched = self._latch.rtp
        if port is None and latched is not None and latched[0] == ip:
            return True  # already latched: the latch keeps its exact source
        # baresip's STUN keepalives go out of these sockets: a call whose keepalive goes
        # unanswered is ended, so the STUN server's answers must pass too.
        restrict_source(media.rtp_fd, ip, port, self._stun_also)
        if media.rtcp_fd >= 0:
            restrict_source(media.rtcp_fd, ip, None if port is None else port + 1, self._stun_also)
        self.log.debug("rtp_source_expected", address=f"{ip}:{port or '*'}")
        return port is None

    # -- the stack's events (loop thread) ---------------------------------------------------
    @property
    def stack_handle(self) -> int:
        return int(self._call.handle)

    def replay(self, event: StackEvent) -> None:
        """An event of this call the loop delivered before the call existed (``dial``)."""
        self._on_event(event)

    def _on_event(self, event: StackEvent) -> None:
        try:
            self._handle(event)
        except Exception:
            self.log.exception("sip_event_failed", sip_event=event.event.name)

    def _handle(self, event: StackEvent) -> None:
        kind = event.event
        if not self.sip_call_id and event.call_id:
            self.sip_call_id = event.call_id
            self.log = self.log.bind(sip_call_id=self.sip_call_id)
            if self._on_call_id is not None:
                self._on_call_id(self)
        if self.outgoing:
            self._outgoing_event(event)
        if kind is Event.CALL_ESTABLISHED:
            self._established = True
            if self._codec is None:
                # Late offer: the codec came with the ACK.
                self._confirmed_pending = True
                self._spawn("media", self._media_up())
                return
            self._confirm()
        elif kind is Event.CALL_CLOSED:
            self._closed(event.text or "")
        elif kind in (Event.CALL_HOLD, Event.CALL_RESUME):
            self._hold(kind is Event.CALL_HOLD)
        elif kind is Event.CALL_REMOTE_SDP and self._established:
            answer = self._reinvite_answer
            if answer is not None and not answer.done() and (event.text or "") == "answer":
                answer.set_result(None)
            self._spawn("media", self._media_up())

    def _outgoing_event(self, event: StackEvent) -> None:
        """What a call we placed learns of the far end's responses."""
        kind = event.event
        if kind in (Event.CALL_RINGING, Event.CALL_PROGRESS):
            self.far_end_responded = True
            code, reason = (
                (180, "Ringing") if kind is Event.CALL_RINGING else (183, "Session Progress")
            )
            self.log.info("sip_call_progress", code=code)
            if self.listener is not None:
                self.listener.on_progress(code, reason)
        elif kind in (Event.CALL_ANSWERED, Event.CALL_ESTABLISHED) or (
            kind is Event.CALL_CLOSED and split_status(event.text or "")[0] is not None
        ):
            self.far_end_responded = True

    def _confirm(self) -> None:
        self._confirmed_pending = False
        if self.listener is not None:
            self.listener.on_confirmed()

    def _hold(self, held: bool) -> None:
        if held == self._held:
            return
        self._held = held
        if self.pump is not None:
            self.pump.held = held
        self.log.info("sip_remote_hold" if held else "sip_remote_resume")
        if self.listener is not None:
            self.listener.on_hold(held)

    def _closed(self, text: str) -> None:
        self._latch.forget()
        if self._disconnected:
            return
        self._disconnected = True
        answer = self._reinvite_answer
        if answer is not None and not answer.done():
            answer.set_exception(SipCommandError("the call ended"))
        code = close_code(text, self._established, self._rejected)
        self.log.info("sip_call_ended", code=code, reason=text)
        if not self._transfer_final:
            if "transfered" in text:  # the stack's spelling: it ended our leg on a 2xx NOTIFY
                self._transfer_status(200, "OK", True)
            else:
                self._transfer_status(487, "the call ended", True)
        if self.listener is not None:
            self.listener.on_disconnected(code, text)
        self._on_ended(self)

    def _on_dtmf(self, digit: baresip.DigitEvent) -> None:
        method = "rfc4733"
        if self._info_digits:
            self._info_digits -= 1
            method = "info"
        if self.listener is not None:
            self.listener.on_dtmf(digit.digit, method)

    def _frames(self) -> None:
        if self.listener is not None:
            self.listener.on_frames()

    # -- what the request gate saw of this call's dialog ---------------------------------------
    def in_dialog(self, method: str, content_type: str, event: str, body: str) -> None:
        """An INFO, a NOTIFY or an answerless ACK of this call's dialog, on its way to baresip."""
        if method == "ACK":
            # A late offer acknowledged without an answer: confirmed, with no codec (the
            # gate ends it; libre's BYE follows).
            self._established = True
            self._confirm()
        elif method == "INFO" and content_type == "application/dtmf-relay":
            # baresip reports INFO digits like RTP ones: the next digit is this one.
            self._info_digits += 1
        elif method == "NOTIFY" and event.split(";", 1)[0].strip().lower() == "refer":
            status = sipfrag_status(body)
            if status is not None and not self._transfer_final:
                # baresip ignores the progress of a REFER it sent; the NOTIFYs carry it.
                code, reason = status
                if code < 200:
                    self._transfer_status(code, reason, False)

    def _transfer_status(self, code: int, reason: str, final: bool) -> None:
        if self._transfer_final:
            return
        self._transfer_final = final
        self.log.info("sip_transfer_status", code=code, reason=reason, final=final)
        if self.listener is not None:
            self.listener.on_transfer_status(code, reason, final)

    def media_stats(self) -> dict[str, Any]:
        """Frame counters and RTP statistics of the call, for its ``media_stats`` line."""
        stats: dict[str, Any] = self.pump.stats() if self.pump is not None else {}
        stats.update(self.rtp_stats())
        return stats

    def rtp_stats(self) -> dict[str, float | int]:
        """The call's RTP quality (the closing report, or the latest RTCP snapshot), in the
        call record's names (as PJSIP's ``rtp_figures``)."""
        report = self._call.final_stats or self._rtcp
        if report is None:
            return {}
        received, lost = report.rx_packets, report.rx_lost
        return {
            "rx_packets": received,
            "rx_lost": lost,
            "rx_loss_pct": round(100 * lost / (received + lost), 2) if received + lost else 0.0,
            "rx_jitter_ms_mean": round(report.rx_jitter_ms, 2),
            "tx_packets": report.tx_packets,
            "tx_lost_reported": report.tx_lost,
            "tx_jitter_ms_reported": round(report.tx_jitter_ms, 2),
            # The jitter buffer's figures are absent when it never ran.
            "jbuf_lost": report.jbuf_lost or 0,
            "jbuf_late": report.jbuf_late or 0,
            "jbuf_delay_ms_mean": report.jbuf_delay_ms or 0,
        }

    def _on_rtcp(self, report: CallStats) -> None:
        self._rtcp = report

    async def close(self) -> None:
        """Let the call's own tasks finish (shutdown)."""
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
