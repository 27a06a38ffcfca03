"""CallSession: one phone call bridged to one realtime session.

It owns the call's lifecycle (ring, open the realtime session, answer, bridge audio both
ways, hang up) and everything per-call: resamplers, playout buffer, the connection. SIP
callbacks reach it on the loop thread; the media port reaches it only through the playout
buffer and the inbound deque.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agent.audio.levels import rms_dbfs, tone
from agent.audio.model_format import ModelAudio, ResampledPcm16, model_audio_for
from agent.audio.pcm import SIP_RATE
from agent.audio.playout import Playout
from agent.barge_in import BargeIn, Interruption
from agent.config import Settings
from agent.observe.outcome import AGENT, CallOutcome
from agent.observe.transcript import Transcript
from agent.realtime.connection import RealtimeConnectError, RealtimeConnection
from agent.realtime.dialect import OutputEvent, output_event
from agent.realtime.endpoint import RealtimeEndpoint
from agent.realtime.session_config import audio_format_update, greeting_request, session_update
from agent.sip.call import SipCall
from agent.sip.media_port import FRAME_BYTES
from agent.tools.catalog import ToolCatalog
from agent.tools.control import SipCallControl
from agent.tools.session import CallTools

T = TypeVar("T")

#: Two short beeps, queued for the caller when the realtime session drops.
_NOTICE_ITEM = "notice:session-lost"
_NOTICE_TONE = tone(660, 150, SIP_RATE, -16.0) + bytes(800 * 2) + tone(660, 150, SIP_RATE, -16.0)
_RESUME_INSTRUCTIONS = (
    "The phone line to you dropped for a moment and is back. Apologise in one short sentence "
    "and ask the caller to repeat what they said last."
)


def _user_part(uri: str) -> str:
    """``"Bob" <sip:+15551234@host>;tag=x`` → ``+15551234``."""
    inner = uri.split("<", 1)[1].split(">", 1)[0] if "<" in uri else uri
    inner = inner.split(":", 1)[1] if ":" in inner else inner
    return inner.split("@", 1)[0].split(";", 1)[0]


def _transcript_path(settings: Settings, call_id: str) -> Path | None:
    if not settings.records.dir:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return Path(settings.records.dir) / f"{stamp}-{call_id}.jsonl"


class CallSession:
    """Bridges ``sip_call`` to a realtime session at ``endpoint`` until either side ends."""

    def __init__(
        self,
        sip_call: SipCall,
        endpoint: RealtimeEndpoint,
        settings: Settings,
        on_finished: Callable[[CallSession], None] | None = None,
        tool_catalog: ToolCatalog | None = None,
    ) -> None:
        self.sip = sip_call
        self.endpoint = endpoint
        self.settings = settings
        self.call_id = sip_call.call_id
        self.log = structlog.get_logger("call").bind(
            call_id=sip_call.call_id, sip_call_id=sip_call.sip_call_id
        )
        self._on_finished = on_finished
        # Resampled PCM16 until the call's codec is known (passthrough may replace it).
        self._audio: ModelAudio = ResampledPcm16(settings.audio.resampler_quality)
        self._down_item: str | None = None
        self.playout = Playout()
        profile = settings.agent
        self.barge_in = BargeIn(
            self.playout,
            output_rate=self._audio.rate,
            server_interrupts=profile.turn_detection.interrupt_response
            and profile.turn_detection.type != "none",
            echo_guard_ms=profile.echo_guard_ms,
            echo_guard_dbfs=profile.echo_guard_dbfs,
        )
        self.transcript = Transcript(_transcript_path(settings, sip_call.call_id), self.call_id)
        # The lambda holds the barge-in state, not the session: a cycle through the session
        # would keep its pj.Call alive until the GC, whose late destructor hangs up whichever
        # new call reuses the pjsua call slot.
        barge_in = self.barge_in
        self.outcome = CallOutcome()
        self.control = SipCallControl(sip_call, lambda: barge_in.agent_speaking, self.outcome)
        self.tools = CallTools(
            settings.tools, self.control, endpoint.dialect, self.transcript, self.log, tool_catalog
        )
        self._conn: RealtimeConnection | None = None
        self._inbound_ready = asyncio.Event()
        self._confirmed = asyncio.Event()
        self._ended = asyncio.Event()
        self._hangup_code: int | None = None
        self._answered = False
        self.frames_sent = 0
        self.audio_deltas = 0
        self.started_at = time.monotonic()
        sip_call.listener = self

    # -- SIP side (loop thread, from PJSUA2 callbacks) ---------------------------------------
    def on_media_active(self, codec: str) -> None:
        port = self.sip.port
        if port is not None:
            port.source = self.playout

    def on_confirmed(self) -> None:
        self._confirmed.set()

    def on_disconnected(self, code: int, reason: str) -> None:
        self._hangup_code = code
        self.outcome.disconnected(code, reason, self._answered)
        self._ended.set()
        self._inbound_ready.set()

    def on_dtmf(self, digit: str, method: str) -> None:
        self.tools.caller_dtmf(digit, method)

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        self.transcript.event("transfer_status", code=code, reason=reason, final=final)
        self.control.on_transfer_status(code, reason, final)

    def wake_inbound(self) -> None:
        """Called by the SIP poll loop when the media port has queued caller frames."""
        port = self.sip.port
        if port is not None and port.inbound:
            self._inbound_ready.set()

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except Exception as exc:
            self.log.exception("call_failed")
            self.outcome.decide(AGENT, f"error: {type(exc).__name__}")
        finally:
            # A caller left on a line with no session behind it hears nothing: hang up.
            self._end("the call's session ended")
            await self.tools.close()
            if self._conn is not None:
                await self._conn.close()
            if self.transcript.started:
                self._write_cut_replies()
                self.transcript.event(
                    "call_end",
                    ended_by=self.outcome.ended_by,
                    reason=self.outcome.reason,
                    sip_code=self._hangup_code,
                    sip_call_id=self.sip.sip_call_id,
                )
            self.transcript.close()
            self.log.info(
                "call_finished",
                ended_by=self.outcome.ended_by,
                reason=self.outcome.reason,
                duration_s=round(time.monotonic() - self.started_at, 2),
                frames_sent=self.frames_sent,
                audio_deltas=self.audio_deltas,
                underruns=self.playout.underruns,
                interruptions=self.barge_in.interruptions,
            )
            if self._on_finished is not None:
                self._on_finished(self)

    async def _run(self) -> None:
        self.sip.ring()
        connected = await self._until_ended(self._connect())
        if connected is None or self._ended.is_set():
            # CANCEL (or the caller gone) while the session was still being opened: give the
            # call's capacity back now, not when the handshake times out.
            self.log.info("call_cancelled_before_answer")
            return
        if not connected:
            self.outcome.decide(AGENT, "the realtime session could not be opened")
            self.sip.reject(503, "Service Unavailable", self.settings.sip.retry_after_s)
            return
        self.sip.answer_ok()
        self._answered = True
        self.log.info("call_answered")
        assert self._conn is not None
        await self._choose_model_audio()
        if not await self._await_ack():
            return
        self.transcript.event(
            "call_start",
            remote=self.sip.remote_uri,
            local=self.sip.local_uri,
            sip_call_id=self.sip.sip_call_id,
        )
        greeting = self.settings.agent.greeting
        if greeting:
            await self._conn.send(greeting_request(greeting))
        reconnects_left = self.settings.realtime.reconnect_attempts
        while not await self._bridge():
            reason = self._conn.close_reason if self._conn else ""
            self.log.warning("realtime_session_lost", reason=reason)
            self.transcript.event("realtime_session_lost", reason=reason)
            # Tell the caller something happened rather than leave them in silence.
            self.playout.push(_NOTICE_ITEM, _NOTICE_TONE)
            self.barge_in.session_restarted()
            if reconnects_left > 0:
                reconnects_left -= 1
                if await self._connect():
                    self.log.info("realtime_session_restored")
                    assert self._conn is not None
                    await self._conn.send(greeting_request(_RESUME_INSTRUCTIONS))
                    continue
            await self._wait_playout_drained(self.settings.sip.session_timeout_s)
            self._end("the realtime session was lost")
            return

    def _end(self, reason: str) -> None:
        """The agent ends the call (BYE, or 603 before answer), for ``reason``."""
        if not self.sip.disconnected:
            self.outcome.decide(AGENT, reason)
        self.sip.end()

    def end(self, reason: str) -> None:
        """End the call from outside (the agent shutting down)."""
        self._end(reason)

    def _write_heard_replies(self) -> None:
        """Write the agent lines whose audio the caller has heard to the end."""
        for item_id in self.transcript.held_final_items():
            if self.barge_in.fully_heard(item_id):
                line = self.transcript.agent_done(item_id, None)
                if line is not None:
                    self.log.info("transcript", role="agent", text=line["text"])

    def _write_cut_replies(self) -> None:
        """Agent lines the caller's hang-up cut short: written now, before the call's end,
        marked interrupted with the share that was heard (as a barge-in's are)."""
        for item_id, barged_in in self.transcript.pending_agent_items():
            heard_ms = self.playout.played_ms(item_id)
            total_ms = self.barge_in.received_ms(item_id)
            if barged_in or heard_ms < total_ms:
                cause = "barge-in" if barged_in else "hang-up"
                self.transcript.agent_truncated(item_id, heard_ms, total_ms, cause=cause)
            else:
                self.transcript.agent_done(item_id, None)

    async def _until_ended(self, work: Awaitable[T]) -> T | None:
        """``work``'s result; None, with ``work`` cancelled, when the call ends first."""
        task = asyncio.ensure_future(work)
        ended = asyncio.ensure_future(self._ended.wait())
        try:
            await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ended.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        return None if task.cancelled() else task.result()

    async def _await_ack(self) -> bool:
        """Wait for the caller's ACK; no audio goes to the model and no reply starts before.

        A 200 that is never acknowledged (a spoofed INVITE) would otherwise hold a call slot
        and stream the line to a billed model session for 64 s: end it after
        ``sip.ack_timeout_s`` instead, and free both at once.
        """
        timeout = self.settings.sip.ack_timeout_s
        try:
            await asyncio.wait_for(self._until_ended(self._confirmed.wait()), timeout)
        except TimeoutError:
            self.log.warning("call_ack_timeout", timeout_s=timeout)
            self._end(f"no ACK within {timeout:g} s")
            return False
        if not self._confirmed.is_set():
            return False
        if self.sip.codec is None:
            # Acknowledged without an SDP answer to our offer (a late-offer INVITE whose ACK
            # carries none, as scanners send): a call with no audio is no call.
            self.log.warning("call_without_media")
            self._end("no audio was negotiated")
            return False
        port = self.sip.port
        if port is not None:
            # Caller audio that arrived before the ACK was never meant for the model.
            port.inbound.clear()
        return True

    async def _bridge(self) -> bool:
        """Carry audio both ways until the call ends (True) or the session drops (False)."""
        uplink = asyncio.create_task(self._uplink(), name=f"uplink-{self.call_id}")
        downlink = asyncio.create_task(self._downlink(), name=f"downlink-{self.call_id}")
        ended = asyncio.create_task(self._ended.wait(), name=f"ended-{self.call_id}")
        watch = asyncio.create_task(self._watch_media(), name=f"media-watch-{self.call_id}")
        tasks = (uplink, downlink, ended, watch)
        done, _ = await asyncio.wait(tasks, return_when="FIRST_COMPLETED")
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # Anything else that finished (the downlink's events ran out, a send failed) means
        # the session is gone while the caller is still there.
        return self._ended.is_set() or watch in done

    async def _watch_media(self) -> None:
        """Return (ending the call) once no RTP came for ``sip.rtp_timeout_s``; meanwhile
        write the agent lines whose audio has been heard.

        A caller gone without a BYE (a dead phone, a lost network) would otherwise hold a
        call slot and stream silence to a billed model session until the drain. Not while
        the far end holds the call: no RTP is expected then.
        """
        timeout = self.settings.sip.rtp_timeout_s
        if timeout <= 0:
            timeout = float("inf")
        last, quiet_since = None, time.monotonic()
        while not self._ended.is_set():
            await asyncio.sleep(min(0.5, timeout / 4))
            self._write_heard_replies()
            now, count = time.monotonic(), self.sip.received_rtp_packets()
            if count is None or count != last:
                last, quiet_since = count, now
                continue
            if now - quiet_since >= timeout:
                self.log.warning("call_media_timeout", timeout_s=timeout)
                self._end(f"no RTP for {timeout:g} s")
                return

    async def _wait_playout_drained(self, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self.playout.queued_samples > 0 and not self._ended.is_set():
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.02)

    async def _connect(self) -> bool:
        """Open the realtime session and configure it; False (logged) when that fails."""
        timeout = self.settings.sip.session_timeout_s
        if self._conn is not None:
            await self._conn.close()
        try:
            self._conn = await RealtimeConnection.open(
                self.endpoint, min(timeout, self.settings.realtime.connect_timeout_s)
            )
            call_vars = {
                "caller": _user_part(self.sip.remote_uri),
                "dialed": _user_part(self.sip.local_uri),
                "call_id": self.call_id,
            }
            update = session_update(
                self.settings.agent,
                self.endpoint.dialect,
                self._audio.codec,
                call_vars=call_vars,
                tools=await self.tools.declarations(),
            )
            await self._conn.send(update)
            await asyncio.wait_for(self._await_session_ready(), timeout)
            self.tools.start(self._conn.send)
        except RealtimeConnectError as exc:
            self.log.error("realtime_connect_failed", error=str(exc))
        except TimeoutError:
            self.log.error("realtime_session_timeout", timeout_s=timeout)
        else:
            return True
        return False

    async def _choose_model_audio(self) -> None:
        """With G.711 passthrough on and a G.711 call, switch the session to the call's codec.

        The codec is known only once the answer's SDP is negotiated, so this is a second
        ``session.update``, sent before any audio or the greeting.
        """
        audio = model_audio_for(
            self.sip.codec,
            self.settings.audio.g711_passthrough,
            self.settings.audio.resampler_quality,
        )
        if audio.codec == self._audio.codec:
            return
        assert self._conn is not None
        await self._conn.send(audio_format_update(self.endpoint.dialect, audio.codec))
        self._audio = audio
        self.barge_in.output_rate = audio.rate
        self.log.info("g711_passthrough", codec=audio.codec)

    async def _await_session_ready(self) -> None:
        assert self._conn is not None
        async for event in self._conn.events():
            kind = event["type"]
            if kind == "session.updated":
                return
            if kind == "error":
                self._log_server_error(event)
        raise RealtimeConnectError(f"connection closed during set-up: {self._conn.close_reason}")

    # -- caller → model ----------------------------------------------------------------------
    async def _uplink(self) -> None:
        conn = self._conn
        assert conn is not None
        batch_frames = self.settings.audio.append_batch_ms // 20
        pending = bytearray()
        while not self._ended.is_set():
            await self._inbound_ready.wait()
            self._inbound_ready.clear()
            port = self.sip.port
            if port is None:
                continue
            inbound = port.inbound
            while inbound:
                frame = inbound.popleft()
                if self.barge_in.barge_in_pending:
                    await self._apply(self.barge_in.caller_audio(20, rms_dbfs(frame)))
                pending += frame
                if len(pending) >= batch_frames * FRAME_BYTES:
                    await conn.append_audio(self._audio.to_model(bytes(pending)))
                    self.frames_sent += len(pending) // FRAME_BYTES
                    pending.clear()

    # -- model → caller ----------------------------------------------------------------------
    async def _downlink(self) -> None:
        conn = self._conn
        assert conn is not None
        malformed: set[str] = set()
        async for event in conn.events():
            try:
                await self.handle_server_event(event)
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                # A malformed event must not end the call; say so once per event type.
                if event["type"] not in malformed:
                    malformed.add(event["type"])
                    self.log.warning("malformed_server_event", type=event["type"], error=repr(exc))

    async def handle_server_event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        await self.tools.server_event(event)
        internal = output_event(self.endpoint.dialect, kind)
        if internal is OutputEvent.AUDIO_DELTA:
            self._play_delta(event)
        elif internal is OutputEvent.AUDIO_DONE:
            item_id = str(event.get("item_id", ""))
            self.barge_in.audio_done(item_id)
            self._finish_item(item_id)
            self._write_heard_replies()
        elif internal is OutputEvent.TRANSCRIPT_DELTA:
            self.transcript.agent_delta(str(event.get("item_id", "")), str(event.get("delta", "")))
        elif internal is OutputEvent.TRANSCRIPT_DONE:
            self.transcript.agent_final(str(event.get("item_id", "")), event.get("transcript"))
            self._write_heard_replies()
        elif kind == "input_audio_buffer.speech_started":
            await self._apply(self.barge_in.speech_started())
        elif kind == "input_audio_buffer.speech_stopped":
            self.barge_in.speech_stopped()
        elif kind == "response.created":
            self.barge_in.response_created(str(event["response"].get("id", "")))
        elif kind == "response.done":
            self.barge_in.response_done(str(event["response"].get("id", "")))
        elif kind == "conversation.item.truncated":
            self._on_truncated(event)
        elif kind == "conversation.item.input_audio_transcription.completed":
            line = self.transcript.caller(str(event.get("item_id", "")), str(event["transcript"]))
            self.log.info("transcript", role="caller", text=line["text"])
        elif kind == "error":
            self._on_error(event)

    async def _apply(self, interruption: Interruption | None) -> None:
        """Carry out a barge-in: the playout is already flushed; tell the model."""
        if interruption is None:
            return
        # What the resampler still holds of the cut item was never heard: drop it.
        self._audio.reset_from_model()
        self._down_item = None
        if interruption.cut:
            assert interruption.item_id is not None
            self.transcript.agent_interrupted(interruption.item_id)
            self.log.info(
                "barge_in",
                item_id=interruption.item_id,
                audio_end_ms=interruption.audio_end_ms,
                cancel=any(e["type"] == "response.cancel" for e in interruption.events),
            )
        assert self._conn is not None
        for client_event in interruption.events:
            await self._conn.send(client_event)

    def _on_truncated(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id", ""))
        heard_ms = int(event.get("audio_end_ms", 0))
        line = self.transcript.agent_truncated(
            item_id, heard_ms, self.barge_in.received_ms(item_id)
        )
        if line is not None:
            self.log.info("transcript", role="agent", text=line["text"], interrupted=True)

    def _play_delta(self, event: dict[str, Any]) -> None:
        item_id = str(event.get("item_id", ""))
        try:
            audio = base64.b64decode(event.get("delta", ""), validate=True)
        except (binascii.Error, ValueError):
            self.log.warning("bad_audio_delta", item_id=item_id)
            return
        width = self._audio.sample_bytes
        if len(audio) % width:
            audio = audio[: len(audio) - len(audio) % width]
        response_id = str(event.get("response_id", ""))
        if not self.barge_in.accept_audio(response_id, item_id, len(audio) // width):
            return
        if item_id != self._down_item:
            self._finish_item(self._down_item)
            self._down_item = item_id
        self.audio_deltas += 1
        pcm = self._audio.from_model(audio)
        if pcm:
            self.playout.push(item_id, pcm)

    def _finish_item(self, item_id: str | None) -> None:
        """End of an item's audio: release what the resampler still holds for it."""
        if item_id is None or item_id != self._down_item:
            return
        tail = self._audio.flush_from_model()
        if tail:
            self.playout.push(item_id, tail)
        self._down_item = None

    def _on_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        if error.get("code") == "response_cancel_not_active":
            # Our cancel crossed the server's response.done: nothing was left to cancel.
            self.barge_in.cancel_rejected()
            self.log.debug("cancel_raced_response_done")
            return
        self._log_server_error(event)

    def _log_server_error(self, event: dict[str, Any]) -> None:
        error = event.get("error") or {}
        self.log.warning(
            "realtime_error",
            code=error.get("code"),
            message=error.get("message"),
            event_id=error.get("event_id"),
        )
