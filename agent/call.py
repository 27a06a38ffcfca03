"""CallSession: the asyncio shell of one call, wiring one engine call, one transport and one
bridge.

Every decision is the bridge's (``agent.bridge.CallBridge``); the session carries them out
and feeds it what happens: the SIP call's events (the engine's listener callbacks, on the
loop thread), the caller's frames (drained once per media tick), the server's messages
(parsed by the session's protocol adapter: Realtime or GPT-Live), tool and delegation
results and the time. What stays here is the I/O and its timing: opening the session while
the call rings (a GPT-Live session over WebSocket starts only once the call's codec is known,
after the answer; over WebRTC the SDP exchange carries its configuration and starts it while
ringing, as a Realtime one is), waiting for the ACK, noticing a caller gone silent for good,
replacing a session before its time limit without a gap, and the order of teardown.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agent.audio.hold_music import load_music
from agent.audio.notice import Notice
from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.actions import (
    Delegate,
    HangUp,
    HoldCall,
    HungUp,
    Note,
    Reconnect,
    ResumeCall,
    Rollover,
    RunTool,
    Transfer,
    TransferFinished,
)
from agent.bridge.adapter import MalformedEvent, ProtocolAdapter
from agent.bridge.events import (
    ServerEvent,
    SessionClosed,
    SessionReady,
    UsageUpdated,
)
from agent.bridge.outcome import AGENT
from agent.bridge.requests import AppendAudio, ClientRequest, CloseSession
from agent.config import ConfigError, Settings
from agent.live.adapter import LiveAdapter
from agent.live.delegation import FAILED, DelegationWorker
from agent.observe.call_metrics import CallObserver, CallSummary, NoCallObserver
from agent.observe.call_record import CallFacts, build_call_record, iso_utc
from agent.observe.record_store import RecordStore
from agent.observe.recording import CallRecording, RecordingTap
from agent.observe.transcript import RecordWriter
from agent.profiles import ProfileRuntime, profile_settings
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.connection import RealtimeConnectError
from agent.realtime.endpoint import LIVE, WEBRTC, RealtimeEndpoint
from agent.realtime.session_config import fill_variables, session_spec
from agent.realtime.transport import MediaPath, RealtimeTransport
from agent.realtime.transports import open_transport
from agent.sip.engine import EngineCall, SipCommandError
from agent.sip.message import uri_user
from agent.tools.builtins import TransferOutcome
from agent.tools.catalog import ToolCatalog
from agent.tools.registry import ToolError
from agent.tools.server_mcp import approved, server_mcp_tools
from agent.tools.session import CallTools
from agent.webhook.lookup import CallLookup, LookupFailed

T = TypeVar("T")
#: How long a GPT-Live session's graceful close may wait for ``session.closed`` (its usage).
LIVE_CLOSE_WAIT_S = 2.0


def _records_stem(settings: Settings, call_id: str) -> Path | None:
    """``<dir>/<time>-<call_id>``: the call's transcript, record and recording share it."""
    if not settings.records.dir:
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return Path(settings.records.dir) / f"{stamp}-{call_id}"


def _model(settings: Settings, protocol: str) -> str:
    """The model (or Azure deployment) the call's sessions use."""
    if protocol == LIVE:
        return settings.live.model
    return settings.secrets.azure_deployment or settings.realtime.model


def _counts(usage: Mapping[str, float]) -> dict[str, float | int]:
    """Usage figures as the record shows them: tokens are counts, seconds keep their ms."""
    return {
        key: round(value) if key.endswith("tokens") else round(value, 3)
        for key, value in usage.items()
    }


def protocol_adapter(endpoint: RealtimeEndpoint) -> ProtocolAdapter:
    """A new adapter for one session at ``endpoint``."""
    if endpoint.protocol == LIVE:
        return LiveAdapter(webrtc=endpoint.transport == WEBRTC)
    return RealtimeAdapter(endpoint.dialect, webrtc=endpoint.transport == WEBRTC)


def bridge_config(
    settings: Settings,
    call_vars: dict[str, str],
    protocol: str = "realtime",
    webrtc: bool = False,
    outbound: bool = False,
) -> BridgeConfig:
    """The bridge's configuration for one call, from the profile (``outbound``: a call the
    agent placed, which opens with answering-machine detection when ``outbound.amd`` is on)."""
    profile = settings.agent
    amd = settings.outbound.amd
    td = profile.turn_detection
    live = protocol == LIVE
    try:
        server_tools = [] if live else server_mcp_tools(settings.tools.server_mcp, os.environ)
    except ConfigError:
        # Checked at start-up; a variable unset since then leaves the servers out.
        server_tools = []
    return BridgeConfig(
        session=session_spec(
            profile,
            call_vars=call_vars,
            server_tools=server_tools,
            live=settings.live if live else None,
        ),
        greeting=fill_variables(profile.greeting, call_vars),
        amd=amd if outbound and amd.enabled else None,
        voicemail_instructions=fill_variables(profile.voicemail_instructions, call_vars),
        resampler_quality=settings.audio.resampler_quality,
        g711_passthrough=settings.audio.g711_passthrough,
        append_batch_ms=settings.audio.append_batch_ms,
        server_interrupts=td.interrupt_response and td.type != "none",
        vad_silence_ms=td.silence_duration_ms if td.type == "server_vad" and not live else 0,
        min_barge_in_ms=profile.min_barge_in_ms,
        min_barge_in_dbfs=profile.min_barge_in_dbfs,
        silence_hangup_ms=profile.silence_hangup_s * 1000,
        max_call_ms=profile.max_call_s * 1000,
        max_call_goodbye_ms=profile.max_call_goodbye_s * 1000,
        filler=settings.tools.filler,
        filler_after_ms=settings.tools.filler_after_ms,
        reconnect_attempts=settings.realtime.reconnect_attempts,
        notice_wait_ms=int(settings.sip.session_timeout_s * 1000),
        dtmf_actions=dict(settings.tools.dtmf_actions),
        dtmf_batch_ms=settings.tools.dtmf_batch_ms,
        dtmf_to_model=settings.tools.dtmf_to_model,
        protocol=protocol,
        max_session_ms=settings.realtime.max_session_s * 1000,
        wall_offset_ms=(time.time() - time.monotonic()) * 1000,
        mcp_approve=approved(settings.tools.server_mcp),
        webrtc=webrtc,
        transfer_hold=settings.tools.transfer_hold,
        # Read (and checked) when the profile was loaded: this is the process's cached copy.
        hold_music=load_music(settings.tools.music_on_hold),
    )


class _Control:
    """The built-in tools' hold on the call (``agent.tools.builtins.CallControl``)."""

    def __init__(self, session: CallSession) -> None:
        self._session = session

    async def end_call(self, reason: str) -> None:
        await self._session.hang_up_when_quiet(reason)

    async def transfer(self, uri: str) -> TransferOutcome:
        return await self._session.transfer_when_quiet(uri)

    def send_dtmf(self, digits: str) -> None:
        try:
            self._session.call.send_dtmf(digits)
        except SipCommandError as exc:
            raise ToolError(str(exc)) from None


class CallSession:
    """Bridges ``call`` to a realtime session at ``endpoint`` until either side ends."""

    #: A call the agent placed (``agent.outbound.session``): it opens with answering-machine
    #: detection when ``[outbound.amd]`` is on.
    placed = False

    def __init__(
        self,
        call: EngineCall,
        endpoint: RealtimeEndpoint,
        settings: Settings,
        on_finished: Callable[[CallSession], None] | None = None,
        tool_catalog: ToolCatalog | None = None,
        lookup: CallLookup | None = None,
        *,
        profile: str = "agent",
        notice: Notice | None = None,
        record_store: RecordStore | None = None,
        observer: CallObserver | None = None,
        numbers: tuple[str, str] | None = None,
        profiles: Mapping[str, ProfileRuntime] | None = None,
        route_profile: str = "",
    ) -> None:
        """``numbers``: the caller's and the dialed number as routing found them (default:
        the user parts of the call's remote and local URIs). ``profiles``: the running
        ``[profiles.NAME]``, among which the pre-call lookup may choose (its choice overrides
        the route's); ``route_profile``: the one the call's route chose ("" = the base)."""
        self.invite_at = time.time()
        self.answered_at: float | None = None
        self.profile = profile
        self._notice = notice
        self._record_store = record_store or RecordStore()
        self.call = call
        self.endpoint = endpoint
        self.settings = settings
        self.call_id = call.call_id
        self.log = structlog.get_logger("call").bind(
            call_id=call.call_id, sip_call_id=call.sip_call_id
        )
        self._on_finished = on_finished
        self.observer = observer or NoCallObserver()
        #: The current session's protocol adapter (a new one for each session).
        self.adapter = protocol_adapter(endpoint)
        self._lookup = lookup
        self._profiles = profiles or {}
        self._route_profile = route_profile
        self._numbers = numbers or (uri_user(call.remote_uri), uri_user(call.local_uri))
        self.ended_at: float | None = None
        self._stem = _records_stem(settings, call.call_id)
        self.records = RecordWriter(
            self._stem.with_suffix(".jsonl") if self._stem else None, self.call_id
        )
        self.recording: CallRecording | None = None
        #: The transfer the agent attempted, and how it ended (for the call record).
        self.transfer: dict[str, Any] | None = None
        #: When the agent put the caller on hold for it, and took them off (Unix seconds).
        self._hold_times: list[float] = []
        #: Our hold and resume re-INVITEs in flight.
        self._sip_tasks: set[asyncio.Future[None]] = set()
        #: Where the call record went (None: not written, or no records directory).
        self.record_path: Path | None = None
        #: The call record, once the call has ended and it was established.
        self.record: dict[str, Any] | None = None
        self.tools = CallTools(
            settings.tools,
            _Control(self),
            self.records,
            self.log,
            tool_catalog,
            on_tool_call=self.observer.tool_call,
        )
        self._configure(settings, {})
        #: Each session's latest usage report (GPT-Live), by session generation.
        self._usage: dict[int, dict[str, float]] = {}
        self._rollover_task: asyncio.Future[None] | None = None
        self._swapped = asyncio.Event()
        self._conn: RealtimeTransport | None = None
        #: Bumped with each new session: a tool's result for an earlier one is not sent.
        self._generation = 0
        #: Set while caller audio flows to the model (``_uplink``); it ends the uplink.
        self._uplink_stop: asyncio.Future[None] | None = None
        #: Set while a send of the uplink waits for the connection (flow control): caller
        #: frames wait in the engine meanwhile, as they would behind a slow network.
        self._uplink_waiting = False
        self._confirmed = asyncio.Event()
        self._ended = asyncio.Event()
        self._hangup_code: int | None = None
        self._hangup_reason = ""
        self._answered = False
        self._hung_up: list[asyncio.Future[None]] = []
        self._transfers: list[asyncio.Future[TransferOutcome]] = []
        self._malformed: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline = 0.0
        self._sends: set[asyncio.Future[None]] = set()
        self.started_at = time.monotonic()
        call.listener = self

    def _configure(self, settings: Settings, variables: dict[str, str]) -> None:
        """The bridge (and GPT-Live's delegation worker) for ``settings``' agent profile, with
        ``variables`` for its placeholders; the call's own ones always win."""
        self.settings = settings
        call_vars = {
            **variables,
            "caller": self._numbers[0],
            "dialed": self._numbers[1],
            "call_id": self.call_id,
        }
        self.bridge = CallBridge(
            bridge_config(
                settings,
                call_vars,
                self.endpoint.protocol,
                webrtc=self.endpoint.transport == WEBRTC,
                outbound=self.placed,
            )
        )
        self._delegation: DelegationWorker | None = None
        if self.endpoint.delegation is not None:
            self._delegation = DelegationWorker(
                self.endpoint.delegation,
                f"{settings.live.delegation_instructions}\n\n"
                "The phone agent's own instructions:\n"
                f"{fill_variables(settings.agent.instructions, call_vars)}",
                self.tools,
                self.log,
                round_timeout_s=settings.live.delegation_timeout_s,
                connect_timeout_s=settings.realtime.connect_timeout_s,
            )

    def _use_endpoint(
        self, endpoint: RealtimeEndpoint, catalog: ToolCatalog, settings: Settings
    ) -> None:
        """Another profile's realtime endpoint and tools for this call (before it connects)."""
        self.endpoint = endpoint
        self.adapter = protocol_adapter(endpoint)
        self.tools = CallTools(
            settings.tools,
            _Control(self),
            self.records,
            self.log,
            catalog,
            on_tool_call=self.observer.tool_call,
        )

    async def _look_up(self) -> None:
        """Ask the pre-call lookup (while ringing) which profile and variables this call gets;
        on any failure the call keeps [agent], and one line says why."""
        if self._lookup is None:
            return
        request = {
            "call_id": self.call_id,
            "sip_call_id": self.call.sip_call_id,
            "caller": self._numbers[0],
            "dialed": self._numbers[1],
            "remote_uri": self.call.remote_uri,
            "local_uri": self.call.local_uri,
        }
        try:
            result = await self._until_ended(self._lookup.ask(request))
        except LookupFailed as exc:
            self.log.warning(
                "call_lookup_failed", why=str(exc), profile=self._route_profile or "[agent]"
            )
            return
        if result is None:
            return  # the caller gave up while we asked
        settings = self.settings
        if result.profile:
            # The lookup's choice overrides the route's: that profile's [agent], [tools] and
            # [realtime], its endpoint and its tool catalog (README "Webhooks").
            self.profile = result.profile
            runtime = self._profiles.get(result.profile)
            if runtime is not None and runtime.endpoint is not None:
                settings = runtime.settings
                self._use_endpoint(runtime.endpoint, runtime.catalog, settings)
            else:
                settings = profile_settings(settings, result.profile)
        self._configure(settings, result.variables)
        # The names only: the values may be the caller's personal data.
        self.log.info(
            "call_profile",
            profile=result.profile or self._route_profile or "[agent]",
            variables=sorted(result.variables),
        )

    # -- the SIP call's events (loop thread, from the engine) ---------------------------------
    def on_media(self, codec: str, rate: int) -> None:
        step = self.bridge.media_started(codec, rate)
        if self.recording is None and self._stem is not None and self.settings.records.recording:
            # From the first frame on the line: the notice and the greeting are in it.
            self.recording = CallRecording(
                self._stem.with_suffix(".wav"), self.bridge.call_rate, f"rec-{self.call_id}"
            )
        if self.recording is not None:
            self.call.play_from(RecordingTap(self.bridge.playout, self.recording))
        else:
            self.call.play_from(self.bridge.playout)
        self._submit(step)

    def on_confirmed(self) -> None:
        self._confirmed.set()

    def on_progress(self, code: int, reason: str) -> None:
        """Only calls we place ring (``agent.outbound.session``)."""

    def on_frames(self) -> None:
        """Caller frames are waiting: through the bridge and on to the model now, in the
        media clock's callback, rather than by waking a task per call per tick (the loop's
        busiest path: at 150 calls it runs 7 500 times a second)."""
        stop = self._uplink_stop
        if stop is None or stop.done() or self._uplink_waiting or self._ended.is_set():
            return
        try:
            self._carry_up()
        except Exception:
            # A bug, not the caller's doing: the call ends (as a failed uplink task did),
            # said once, and the clock serves every other call on.
            self.log.exception("uplink_failed")
            stop.set_result(None)

    def on_dtmf(self, digit: str, method: str) -> None:
        self._submit(self.bridge.caller_dtmf(digit, method, self._now()))

    def on_hold(self, held: bool) -> None:
        self._submit(self.bridge.far_end_hold(held))

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        self.log.info("sip_transfer_status", code=code, reason=reason, final=final)
        self._submit(self.bridge.transfer_status(code, reason, final))

    def on_disconnected(self, code: int, reason: str) -> None:
        self._hangup_code, self._hangup_reason = code, reason
        self._ended.set()

    # -- the call's tools ask (loop thread) ---------------------------------------------------
    async def hang_up_when_quiet(self, reason: str) -> None:
        """End the call once the agent's words were heard; returns once it is ended."""
        if self.call.disconnected:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._hung_up.append(done)
        self._submit(self.bridge.hang_up_when_quiet(reason, self._now()))
        await done

    async def transfer_when_quiet(self, uri: str) -> TransferOutcome:
        if self._transfers:
            raise ToolError("a transfer is already in progress")
        outcome: asyncio.Future[TransferOutcome] = asyncio.get_running_loop().create_future()
        self._transfers.append(outcome)
        self._submit(self.bridge.transfer_when_quiet(uri, self._now()))
        result = await outcome
        if result.status == 0:
            raise ToolError(result.reason)
        return result

    def end(self, reason: str) -> None:
        """End the call from outside (the agent shutting down)."""
        self._end(reason)

    # -- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except Exception as exc:
            self.log.exception("call_failed")
            self.bridge.outcome.decide(AGENT, f"error: {type(exc).__name__}")
        finally:
            # A caller left on a line with no session behind it hears nothing: hang up.
            self._end("the call's session ended")
            await self._finish()

    async def _finish(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._sip_tasks):
            task.cancel()
        await asyncio.gather(*self._sip_tasks, return_exceptions=True)
        await self._cancel_rollover()
        await self.tools.close()
        if self._delegation is not None:
            await self._delegation.close()
        if self._conn is not None:
            await self._close_session(self._conn, self.adapter, self._generation)
        step = self.bridge.call_ended(self._hangup_code or 0, self._hangup_reason, self._answered)
        self._apply_now(step)
        self.ended_at = time.time()
        await self._close_recording()
        usage = self.usage
        if self.records.started:
            self.records.event("call_end", **self._outcome())
        self.records.close()
        await self._write_call_record(usage)
        self.log.info(
            "call_finished",
            ended_by=self.bridge.outcome.ended_by,
            reason=self.bridge.outcome.reason,
            duration_s=round(time.monotonic() - self.started_at, 2),
            frames_sent=self.bridge.frames_sent,
            audio_deltas=self.bridge.audio_deltas,
            underruns=self.bridge.playout.underruns,
            interruptions=self.bridge.interruptions,
            ignored_barge_ins=self.bridge.ignored_barge_ins,
            tool_fillers=self.bridge.fillers,
            **({"usage": usage} if usage is not None else {}),
        )
        self.observer.finished(
            CallSummary(
                answered=self._answered,
                ended_by=self.bridge.outcome.ended_by,
                interruptions=self.bridge.interruptions,
                gap_frames=self.bridge.playout.gap_frames,
            )
        )
        if self._on_finished is not None:
            self._on_finished(self)

    def _outcome(self) -> dict[str, Any]:
        """How the call ended: the ``call_end`` line's fields, and the record's core."""
        usage = self.usage
        return {
            "ended_by": self.bridge.outcome.ended_by,
            "reason": self.bridge.outcome.reason,
            "sip_code": self._hangup_code,
            "sip_call_id": self.call.sip_call_id,
            "interruptions": self.bridge.interruptions,
            "ignored_barge_ins": self.bridge.ignored_barge_ins,
            "tool_fillers": self.bridge.fillers,
            **({"usage": usage} if usage is not None else {}),
        }

    async def _close_recording(self) -> None:
        recording = self.recording
        if recording is None:
            return
        self.call.play_from(self.bridge.playout)
        recording.close()
        # The writer thread writes what is queued and closes the file; off the loop.
        await asyncio.to_thread(recording.join)
        if recording.error is not None or recording.dropped_frames:
            self.log.warning(
                "recording_incomplete",
                path=str(recording.path),
                error=recording.error,
                dropped_frames=recording.dropped_frames,
            )

    def call_facts(self, usage: dict[str, Any] | None) -> CallFacts:
        """What the call record says, as the call ends."""
        outcome = self.bridge.outcome
        recording = self.recording
        return CallFacts(
            call_id=self.call_id,
            sip_call_id=self.call.sip_call_id,
            caller=uri_user(self.call.remote_uri),
            dialed=uri_user(self.call.local_uri),
            caller_uri=self.call.remote_uri,
            dialed_uri=self.call.local_uri,
            profile=self.profile,
            provider=self.endpoint.provider,
            protocol=self.endpoint.protocol,
            model=_model(self.settings, self.endpoint.protocol),
            invite_at=self.invite_at,
            answered_at=self.answered_at,
            ended_at=self.ended_at or time.time(),
            ended_by=outcome.ended_by,
            reason=outcome.reason,
            sip_code=self._hangup_code,
            barge_ins=self.bridge.interruptions,
            turn_latencies_ms=list(self.bridge.turns.latencies_ms),
            usage=usage,
            rtp=self.call.rtp_stats() or None,
            transfer=self.transfer,
            amd=self.bridge.amd_record,
            transcript=str(self.records.path) if self.records.path else None,
            recording=None
            if recording is None
            else {
                "path": str(recording.path),
                "channels": {"left": "caller", "right": "agent"},
                "rate": recording.rate,
                "seconds": round(recording.seconds, 2),
                "dropped_frames": recording.dropped_frames,
                "error": recording.error,
            },
        )

    async def _write_call_record(self, usage: dict[str, Any] | None) -> None:
        """The call record, next to the transcript: only for a call that was established
        (like the transcript, a refused or unacknowledged call leaves no file)."""
        if self._stem is None or not self.records.started:
            return
        self.record = build_call_record(self.call_facts(usage), self.records.lines)
        path = self._stem.with_suffix(".json")
        if await self._record_store.save(path, self.record):
            self.record_path = path

    @property
    def usage(self) -> dict[str, Any] | None:
        """The call's model usage as the servers reported it: each session's (GPT-Live's
        seconds; Realtime's tokens, summed over its responses), and their totals; None when
        no server reported any."""
        if not self._usage:
            return None
        sessions = [self._usage[generation] for generation in sorted(self._usage)]
        totals: dict[str, float] = {}
        for session in sessions:
            for key, value in session.items():
                totals[key] = totals.get(key, 0.0) + value
        return {**_counts(totals), "sessions": [_counts(session) for session in sessions]}

    async def _run(self) -> None:
        self.call.ring()
        await self._look_up()
        if self._ended.is_set():
            self.log.info("call_cancelled_before_answer")
            return
        connected = await self._until_ended(self._connect())
        if connected is None or self._ended.is_set():
            # CANCEL (or the caller gone) while the session was still being opened: give the
            # call's capacity back now, not when the handshake times out.
            self.log.info("call_cancelled_before_answer")
            return
        if not connected:
            self.bridge.outcome.decide(AGENT, "the realtime session could not be opened")
            self.call.reject(503, "Service Unavailable", self.settings.sip.retry_after_s)
            return
        self.call.answer()
        self._answered = True
        self.answered_at = time.time()
        self.observer.answered()
        self.log.info("call_answered")
        if not await self._await_ack():
            return
        await self._converse()

    async def _converse(self) -> None:
        """The established call, with its session open: bridge them until either ends."""
        if not self.bridge.session_ready and not await self._await_live_start():
            return
        self.records.event(
            "call_start",
            remote=self.call.remote_uri,
            local=self.call.local_uri,
            sip_call_id=self.call.sip_call_id,
        )
        notice = self._notice.at_rate(self.bridge.call_rate) if self._notice is not None else b""
        await self._carry_out(self.bridge.call_confirmed(self._now(), notice))
        while True:
            lost = await self._bridge_audio()
            if lost is None:
                return
            step = self.bridge.session_lost(lost, self._now())
            reconnect = any(isinstance(action, Reconnect) for action in step.actions)
            await self._carry_out(step)
            await self._cancel_rollover()
            if reconnect:
                if await self._connect():
                    await self._carry_out(self.bridge.session_restored())
                    continue
                await self._carry_out(self.bridge.reconnect_failed(self._now()))
            # No session any more: the line stays up until the bridge hangs up (after the
            # notice has been heard).
            self._conn = None
            await self._bridge_audio()
            return

    async def _connect(self) -> bool:
        """Open the realtime session and configure it; False (logged) when that fails."""
        timeout = self.settings.sip.session_timeout_s
        if self._conn is not None:
            await self._conn.close()
            self._conn = None
        try:
            self.bridge.offer_tools(await self.tools.declarations())
            opened = time.monotonic()
            # The configuration first: GPT-Live over WebRTC carries it in the SDP exchange
            # that opens the session (the adapter's ``creation``); elsewhere it is sent next.
            adapter = protocol_adapter(self.endpoint)
            setup = self.bridge.session_config()
            self._conn = await open_transport(
                self.endpoint,
                min(timeout, self.settings.realtime.connect_timeout_s),
                adapter.creation(setup.requests),
            )
            self._generation += 1
            self.adapter = adapter
            await self._carry_out(setup)
            if self.bridge.config_waiting:
                # GPT-Live: the session starts once the call's codec is known (after the
                # answer); the socket is open and waits.
                self.observer.session_opened(time.monotonic() - opened)
                return True
            await asyncio.wait_for(
                self._until_ready(self._conn, self.adapter, self._generation), timeout
            )
            self.observer.session_opened(time.monotonic() - opened)
        except RealtimeConnectError as exc:
            self.log.error("realtime_connect_failed", error=str(exc))
        except TimeoutError:
            self.log.error("realtime_session_timeout", timeout_s=timeout)
        else:
            return True
        return False

    async def _until_ready(
        self, conn: RealtimeTransport, adapter: ProtocolAdapter, generation: int
    ) -> None:
        async for message in conn.messages():
            events = await self._receive(message, adapter, generation)
            if any(isinstance(event, SessionReady) for event in events):
                return
        raise RealtimeConnectError(f"connection closed during set-up: {conn.close_reason}")

    async def _await_live_start(self) -> bool:
        """After the answer: wait for the GPT-Live session, started with the call's codec;
        False (the call ended) when it does not start."""
        timeout = self.settings.sip.session_timeout_s
        conn = self._conn
        if conn is not None:
            try:
                started = self._until_ready(conn, self.adapter, self._generation)
                await asyncio.wait_for(self._until_ended(started), timeout)
            except TimeoutError:
                self.log.error("live_session_timeout", timeout_s=timeout)
            except RealtimeConnectError as exc:
                self.log.error("live_session_failed", error=str(exc))
        if self.bridge.session_ready:
            return True
        if not self.call.disconnected:
            self._end("the GPT-Live session did not start")
        return False

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
        if self.call.codec is None:
            # Acknowledged without an SDP answer to our offer (a late-offer INVITE whose ACK
            # carries none, as scanners send): a call with no audio is no call.
            self.log.warning("call_without_media")
            self._end("no audio was negotiated")
            return False
        # Caller audio that arrived before the ACK was never meant for the model (but it
        # was on the line: the recording keeps it).
        early = self.call.take_frames()
        if self.recording is not None:
            self.recording.caller_frames(early)
        return True

    async def _bridge_audio(self) -> str | None:
        """Carry audio both ways until the call ends (None) or the session is lost (why).

        A rollover swaps the session underneath: the downlink then follows the new one."""
        tasks = [
            asyncio.create_task(self._uplink(), name=f"uplink-{self.call_id}"),
            asyncio.create_task(self._ended.wait(), name=f"ended-{self.call_id}"),
            asyncio.create_task(self._watch_media(), name=f"media-watch-{self.call_id}"),
        ]
        while True:
            downlink = None
            if self._conn is not None:
                downlink = asyncio.create_task(
                    self._downlink(self._conn, self.adapter, self._generation),
                    name=f"down-{self.call_id}",
                )
            swapped = asyncio.create_task(self._swapped.wait())
            waiting = [*tasks, swapped] + ([downlink] if downlink is not None else [])
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            swapped.cancel()
            if swapped in done and not self._ended.is_set() and not (set(tasks) & done):
                self._swapped.clear()
                if downlink is not None:
                    downlink.cancel()
                    await asyncio.gather(downlink, return_exceptions=True)
                continue
            break
        for task in [*tasks, *([downlink] if downlink is not None else [])]:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if downlink is not None:
            await asyncio.gather(downlink, return_exceptions=True)
        if self._ended.is_set() or downlink is None or downlink not in done:
            return None
        return self._conn.close_reason if self._conn is not None else ""

    def _end(self, reason: str) -> None:
        """The agent ends the call (BYE, or 603 before answer), for ``reason``."""
        if not self.call.disconnected:
            self.bridge.outcome.decide(AGENT, reason)
        self.call.hang_up()

    async def _watch_media(self) -> None:
        """Return (ending the call) once no RTP came for ``sip.rtp_timeout_s``.

        A caller gone without a BYE (a dead phone, a lost network) would otherwise hold a
        call slot and stream silence to a billed model session until the drain. Not while
        the far end holds the call: no RTP is expected then.
        """
        timeout = self.settings.sip.rtp_timeout_s
        if timeout <= 0:
            while not self._ended.is_set():
                # The stream's RTP figures go with it at a caller's BYE: keep them fresh.
                await asyncio.sleep(1.0)
                self.call.rtp_stats()
            return
        last, quiet_since = None, time.monotonic()
        while not self._ended.is_set():
            # Also refreshes the RTP figures the engine keeps for the call record.
            await asyncio.sleep(min(1.0, timeout / 4))
            now, count = time.monotonic(), self.call.received_rtp_packets()
            if count is None or count != last:
                last, quiet_since = count, now
                continue
            if now - quiet_since >= timeout:
                self.log.warning("call_media_timeout", timeout_s=timeout)
                self._end(f"no RTP for {timeout:g} s")
                return

    # -- caller -> model ---------------------------------------------------------------------
    async def _uplink(self) -> None:
        """Caller audio flows (``on_frames``) while this waits; it returns if that fails."""
        self._uplink_stop = asyncio.get_running_loop().create_future()
        try:
            await self._uplink_stop
        finally:
            self._uplink_stop = None

    def _carry_up(self) -> None:
        now = self._now()
        step = Step()
        frames = self.call.take_frames()
        if self.recording is not None:
            self.recording.caller_frames(frames)
        for frame in frames:
            step.add(self.bridge.caller_frame(frame, now))
        step.add(self.bridge.tick(now))
        self._apply_now(step)
        conn = self._conn
        if not step.requests or conn is None:
            return
        try:
            texts = self._wire_texts(conn, self.adapter, step.requests)
            for index, text in enumerate(texts):
                if not conn.send_now(text):
                    self._uplink_waits_for(conn, texts[index:])
                    return
        except Exception as exc:
            # The session is going (the downlink will say so); nothing more to send.
            self.log.debug("request_not_sent", error=str(exc))

    def _uplink_waits_for(self, conn: RealtimeTransport, texts: list[str]) -> None:
        """The connection holds writes back: ``texts`` go when it takes them, and the
        uplink waits until then, so the caller's audio stays in order."""
        self._uplink_waiting = True

        async def send_rest() -> None:
            try:
                for text in texts:
                    await conn.send(text)
            except Exception as exc:
                self.log.debug("request_not_sent", error=str(exc))
            finally:
                self._uplink_waiting = False

        task = asyncio.ensure_future(send_rest())
        self._sends.add(task)
        task.add_done_callback(self._sends.discard)

    # -- model -> caller ---------------------------------------------------------------------
    async def _downlink(
        self, conn: RealtimeTransport, adapter: ProtocolAdapter, generation: int
    ) -> None:
        media = conn.media
        track = None
        if media is not None:
            track = asyncio.create_task(self._track_downlink(media, adapter, generation))
        try:
            async for message in conn.messages():
                await self._receive(message, adapter, generation)
        finally:
            if track is not None:
                track.cancel()
                await asyncio.gather(track, return_exceptions=True)

    async def _track_downlink(
        self, media: MediaPath, adapter: ProtocolAdapter, generation: int
    ) -> None:
        """WebRTC: the model's audio from its track, into the bridge as it arrives (the
        adapter says whose it is)."""
        async for audio in media.audio():
            if generation < self._generation:
                return  # a replaced session's track
            for event in adapter.track_audio(audio):
                await self._carry_out(self.bridge.server_event(event, self._now()))

    async def _receive(
        self, message: str | bytes, adapter: ProtocolAdapter, generation: int
    ) -> list[ServerEvent]:
        """Parse one message of session ``generation`` and feed the bridge its events."""
        if generation < self._generation:
            return []  # a replaced session's last words
        try:
            events = adapter.parse(message)
        except MalformedEvent as exc:
            # A malformed event must not end the call; say so once per event type.
            if exc.event_type not in self._malformed:
                self._malformed.add(exc.event_type)
                self.log.warning(
                    "malformed_server_event", type=exc.event_type, error=exc.problem[:200]
                )
            return []
        for event in events:
            if isinstance(event, UsageUpdated):
                self._usage[generation] = event.usage
            now = self._now()
            self.observer.server_event(event, now)
            await self._carry_out(self.bridge.server_event(event, now))
        return events

    # -- replacing and closing sessions ---------------------------------------------------------
    async def _rollover(self) -> None:
        """Open the replacement session, configure it with the conversation so far, then
        switch to it and close the old one: make before break, so the caller hears nothing."""
        old_conn, old_adapter, old_generation = self._conn, self.adapter, self._generation
        generation, adapter = old_generation + 1, protocol_adapter(self.endpoint)
        timeout = self.settings.sip.session_timeout_s
        conn: RealtimeTransport | None = None
        try:
            setup = self.bridge.rollover_config()
            conn = await open_transport(
                self.endpoint,
                min(timeout, self.settings.realtime.connect_timeout_s),
                adapter.creation(setup.requests),
            )
            await self._send_to(conn, adapter, setup.requests)
            await asyncio.wait_for(self._until_ready(conn, adapter, generation), timeout)
        except (RealtimeConnectError, TimeoutError, OSError) as exc:
            if conn is not None:
                await conn.close()
            why = str(exc) or f"no session within {timeout:g} s"
            self._apply_now(self.bridge.rollover_failed(why, self._now()))
            return
        self._generation, self.adapter, self._conn = generation, adapter, conn
        self._swapped.set()
        self._apply_now(self.bridge.rollover_done(self._now()))
        if old_conn is not None:
            await self._close_session(old_conn, old_adapter, old_generation)

    async def _cancel_rollover(self) -> None:
        task, self._rollover_task = self._rollover_task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _close_session(
        self, conn: RealtimeTransport, adapter: ProtocolAdapter, generation: int
    ) -> None:
        """Close a session; GPT-Live's gracefully, to hear its final usage."""
        texts = adapter.encode(CloseSession())
        if texts:
            with contextlib.suppress(Exception):
                for text in texts:
                    await conn.send(text)
                await asyncio.wait_for(
                    self._until_closed(conn, adapter, generation), LIVE_CLOSE_WAIT_S
                )
        await conn.close()

    async def _until_closed(
        self, conn: RealtimeTransport, adapter: ProtocolAdapter, generation: int
    ) -> None:
        async for message in conn.messages():
            with contextlib.suppress(MalformedEvent):
                for event in adapter.parse(message):
                    if isinstance(event, UsageUpdated):
                        self._usage[generation] = event.usage
                    elif isinstance(event, SessionClosed):
                        return

    # -- carrying out what the bridge decided -------------------------------------------------
    def _submit(self, step: Step) -> None:
        """From a synchronous callback: act now, send the requests from a task (in order)."""
        self._apply_now(step)
        if step.requests:
            task = asyncio.ensure_future(self._send(step))
            self._sends.add(task)
            task.add_done_callback(self._sends.discard)

    async def _carry_out(self, step: Step) -> None:
        self._apply_now(step)
        if step.requests:
            await self._send(step)

    async def _send(self, step: Step) -> None:
        if self._conn is not None:
            await self._send_to(self._conn, self.adapter, step.requests)

    async def _send_to(
        self, conn: RealtimeTransport, adapter: ProtocolAdapter, requests: list[ClientRequest]
    ) -> None:
        try:
            for text in self._wire_texts(conn, adapter, requests):
                await conn.send(text)
        except Exception as exc:
            # The session is going (the downlink will say so); nothing more to send.
            self.log.debug("request_not_sent", error=str(exc))

    @staticmethod
    def _wire_texts(
        conn: RealtimeTransport, adapter: ProtocolAdapter, requests: list[ClientRequest]
    ) -> list[str]:
        """The wire events for ``requests``; over WebRTC the caller's audio goes on the
        track instead, here and now."""
        media = conn.media
        texts: list[str] = []
        for request in requests:
            if media is not None and isinstance(request, AppendAudio):
                media.send_audio(request.audio)
                continue
            texts.extend(adapter.encode(request))
        return texts

    def _apply_now(self, step: Step) -> None:
        for line in step.lines:
            self.records.write(line)
        for action in step.actions:
            self._act(action)
        self._schedule_tick()

    def _act(self, action: Any) -> None:
        if isinstance(action, Note):
            getattr(self.log, action.level)(action.event, **action.fields)
        elif isinstance(action, HangUp):
            self.call.hang_up()
        elif isinstance(action, HungUp):
            for done in self._hung_up:
                if not done.done():
                    done.set_result(None)
            self._hung_up.clear()
        elif isinstance(action, HoldCall):
            self._hold_times = [time.time()]
            self._spawn_sip(self._hold())
        elif isinstance(action, ResumeCall):
            self._hold_ended()
            self._spawn_sip(self._resume())
        elif isinstance(action, Transfer):
            self.transfer = {"destination": action.uri, "status": None, "reason": ""}
            try:
                self.call.transfer(action.uri)
                self.log.info("sip_transfer_sent", refer_to=action.uri)
            except SipCommandError as exc:
                self._apply_now(self.bridge.transfer_not_sent(str(exc)))
        elif isinstance(action, TransferFinished):
            self._hold_ended()
            if self.transfer is None:
                # Not even the REFER went out (the call ended while the caller was held).
                self.transfer = {"destination": None}
            self.transfer.update(status=action.status, reason=action.reason, ok=action.ok)
            if self._hold_times:
                self.transfer["hold"] = self._hold_record()
            for outcome in self._transfers:
                if not outcome.done():
                    outcome.set_result(TransferOutcome(action.status, action.reason))
            self._transfers.clear()
        elif isinstance(action, RunTool):
            self.tools.spawn(self._run_tool(action), f"tool-{action.name}-{action.call_id}")
        elif isinstance(action, Delegate):
            self.tools.spawn(self._delegate(action), f"delegation-{action.delegation_id}")
        elif isinstance(action, Rollover) and (
            self._rollover_task is None or self._rollover_task.done()
        ):
            self._rollover_task = asyncio.ensure_future(self._rollover())

    def _spawn_sip(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._sip_tasks.add(task)
        task.add_done_callback(self._sip_tasks.discard)

    async def _hold(self) -> None:
        """Our hold's re-INVITE; the bridge hears how it went (and sends the REFER)."""
        ok, why = True, ""
        try:
            await self.call.hold()
        except SipCommandError as exc:
            ok, why = False, str(exc)
        await self._carry_out(self.bridge.agent_hold_done(ok, why, self._now()))

    async def _resume(self) -> None:
        try:
            await self.call.resume()
        except SipCommandError as exc:
            # The call goes on regardless: the far end hears the agent again once it resumes.
            self.log.warning("agent_resume_failed", reason=str(exc))

    def _hold_ended(self) -> None:
        if len(self._hold_times) == 1:
            self._hold_times.append(time.time())

    def _hold_record(self) -> dict[str, Any]:
        """The caller's time on the agent's hold, for the call record."""
        start = self._hold_times[0]
        end = self._hold_times[1] if len(self._hold_times) > 1 else self.ended_at or time.time()
        return {
            "start": iso_utc(start),
            "end": iso_utc(end),
            "ms": round((end - start) * 1000),
            "music": self.bridge.config.hold_music.source
            if self.bridge.config.hold_music is not None
            else "built-in",
        }

    async def _run_tool(self, action: RunTool) -> None:
        generation = self._generation
        result = await self.tools.run(
            action.name, action.arguments, call_id=action.call_id, origin=action.origin
        )
        if generation != self._generation:
            # A new session is a new conversation: it never issued this call id.
            return
        if action.call_id is not None:
            step = self.bridge.tool_result(action.call_id, result.output, result.respond)
        elif result.output.startswith("Error:"):
            digit = action.origin.partition(":")[2]
            step = self.bridge.dtmf_action_failed(digit, action.name, result.output)
        else:
            return
        await self._carry_out(step)

    async def _delegate(self, action: Delegate) -> None:
        """Do GPT-Live's delegated work and hand the bridge what to say about it."""
        generation = self._generation
        if self._delegation is None:
            text = FAILED
        else:
            text = await self._delegation.run(action, self.bridge.config.session.tools)
        if generation != self._generation or self.call.disconnected:
            return  # another session (or none) would not know this delegation
        await self._carry_out(self.bridge.delegation_result(action.delegation_id, text))

    def _schedule_tick(self) -> None:
        """Wake the bridge by its next deadline (DTMF batches, waits for quiet)."""
        deadline = None if self._ended.is_set() else self.bridge.next_deadline
        if self._timer is not None:
            if deadline == self._timer_deadline:
                return  # every media tick asks: keep the timer rather than make it anew
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_at(deadline / 1000, self._tick)
            self._timer_deadline = deadline

    def _tick(self) -> None:
        self._timer = None
        self._submit(self.bridge.tick(self._now()))

    @staticmethod
    def _now() -> float:
        return asyncio.get_running_loop().time() * 1000
