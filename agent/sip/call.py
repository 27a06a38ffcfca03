"""One SIP call as PJSUA2 sees it, translated into plain method calls for the call session.

In poll mode every callback here runs on the asyncio loop thread (inside
``libHandleEvents``), so the listener may touch asyncio objects directly. Callbacks never let
an exception escape into SWIG: it would be printed and lost, and could leave PJSIP mid-update.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Protocol

import pjsua2 as pj
import structlog

from agent.sip.media_port import BridgePort

_call_numbers = itertools.count(1)


class CallListener(Protocol):
    def on_media_active(self, codec: str) -> None: ...

    def on_disconnected(self, code: int, reason: str) -> None: ...

    def on_dtmf(self, digit: str, method: str) -> None: ...

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None: ...


class SipCommandError(Exception):
    """A SIP command (transfer, DTMF) could not be carried out; ``str()`` says why."""


def _sip_header(name: str, value: str) -> pj.SipHeader:
    header = pj.SipHeader()
    header.hName = name
    header.hValue = value
    return header


class SipCall(pj.Call):
    """A PJSUA2 call owned by :class:`~agent.sip.endpoint.SipEndpoint`."""

    def __init__(self, account: pj.Account, call_id: int, on_retire: Any) -> None:
        super().__init__(account, call_id)
        self.call_id = f"c{next(_call_numbers):05d}"
        info = self.getInfo()
        self.sip_call_id: str = info.callIdString
        self.remote_uri: str = info.remoteUri
        self.local_uri: str = info.localUri
        self.codec: str | None = None
        self.port: BridgePort | None = None
        self.listener: CallListener | None = None
        self.disconnected = False
        self.log = structlog.get_logger("sip").bind(
            call_id=self.call_id, sip_call_id=self.sip_call_id
        )
        self._on_retire = on_retire
        self._audio: pj.AudioMedia | None = None

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

    def _respond(self, code: int) -> None:
        prm = pj.CallOpParam()
        prm.statusCode = code
        self._safe(f"answer {code}", lambda: self.answer(prm))

    def _safe(self, what: str, action: Any) -> None:
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
            if info.state != pj.PJSIP_INV_STATE_DISCONNECTED or self.disconnected:
                return
            self.disconnected = True
            self._detach_media()
            self.log.info("sip_call_ended", code=int(info.lastStatusCode), reason=info.lastReason)
            if self.listener is not None:
                self.listener.on_disconnected(int(info.lastStatusCode), info.lastReason)
            self._on_retire(self)
        except Exception:
            self.log.exception("sip_callback_failed", callback="onCallState")

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

    def onCallMediaState(self, prm: pj.OnCallMediaStateParam) -> None:
        try:
            self._attach_media()
        except Exception:
            self.log.exception("sip_callback_failed", callback="onCallMediaState")

    # -- media -------------------------------------------------------------------------------
    def _attach_media(self) -> None:
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO:
                continue
            if media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            audio = self.getAudioMedia(index)
            if self.port is None:
                self.port = BridgePort(f"bridge-{self.call_id}")
            # Re-INVITEs recreate the stream: connect again in both directions.
            audio.startTransmit(self.port)
            self.port.startTransmit(audio)
            self._audio = audio
            codec = self.getStreamInfo(index).codecName.upper()
            if codec != self.codec:
                self.codec = codec
                self.log.info("sip_media_active", codec=codec)
                if self.listener is not None:
                    self.listener.on_media_active(codec)
            return

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
        """Drop the media port now, on the loop thread (never leave it to the GC)."""
        self._detach_media()
        port, self.port = self.port, None
        del port

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
