"""CallBridge: one call's decisions, with no I/O at all.

Contract (the style of websockets' ``Protocol`` and h11): the shell feeds the bridge what
happened, with the time in milliseconds on its own clock, and carries out what comes back.
Every input method returns a :class:`Step`: requests for the model's side (to be encoded by
the session's protocol adapter and sent in order), actions for the shell (SIP actions, tools
to run, log notes) and transcript lines (to be written in order). Nothing here waits,
sleeps, reads a clock or touches a socket; ``tick(now)`` is how time passes (the shell calls
it at least every 20 ms media tick, and by ``next_deadline``).

Inputs:
- the session: ``session_config()`` when a transport is open, ``server_event(event, now)``
  for each parsed event, ``session_lost``/``session_restored``/``reconnect_failed``;
- the call: ``media_started(codec, rate)`` once the SIP codec is known, ``call_confirmed``
  after the ACK, ``caller_frame(pcm, now)`` for each 20 ms frame, ``caller_dtmf``,
  ``far_end_hold``, ``agent_hold_done``, ``transfer_status``, ``call_ended``;
- tools: ``tool_result``, ``dtmf_action_failed``, and the call control the built-in tools
  ask for (``hang_up_when_quiet``, ``transfer_when_quiet``).

Agent audio goes straight into ``playout``, which the SIP engine's media thread pulls from
(the one object both threads touch, behind its own short lock).

There is one notion of the response in progress (``_response``): barge-in, playout and the
tool-call protocol all ask it, none keeps its own.

Two protocols sit behind it (``BridgeConfig.protocol``). The Realtime API's server reports
speech, responses and truncations, and the bridge cuts the agent off on its speech events.
GPT-Live's server owns turn-taking: its session format is fixed at start (so its
configuration waits for the call's codec; over WebRTC the media negotiates the format and it
does not wait), it has no truncation, and its only sign that the caller took the floor is
the caller's transcript arriving while its audio has stopped (see ``barge_in.YieldWatch``;
over WebRTC, while its track has gone quiet: Live has no playout events); its tools come
as delegations (``Delegate``). Either session is replaced before it reaches its time limit,
at a quiet moment, carrying the conversation over (``Rollover``).

The call's experience: a silent caller is asked once whether they are still there, then
said goodbye to, and a call reaching its length limit is ended politely (``limits``); a tool
that keeps the caller waiting is filled with a thinking sound or a holding line
(``filler``); too-short barge-in triggers are ignored (``BargeIn.min_ms``); a far-end hold
stops both directions without losing anything (``far_end_hold``). Around a transfer the
agent holds the caller itself (``BridgeConfig.transfer_hold``, RFC 5589's basic transfer):
once its last words were heard it asks for the hold (``HoldCall``), the caller hears music on
hold and the model neither hears the caller nor is heard; the REFER follows the hold's answer;
a failed transfer resumes the call (``ResumeCall``), stops the music and tells the tool.

An outbound call with answering-machine detection (``BridgeConfig.amd``) opens in silence:
the callee's audio goes to the detector and not to the model, and no response is asked for,
until the verdict; then the agent greets a person, or leaves the voicemail message after the
machine's greeting and hangs up, or hangs up at once (``opening``; ``amd_record`` for the
call record).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from agent.audio.codecs import PCM16, TRACK_PCM16
from agent.audio.hold_music import HoldMusic, MusicLoop, builtin_music
from agent.audio.levels import rms_dbfs, tone
from agent.audio.model_format import (
    ModelAudio,
    ResampledPcm16,
    live_audio_for,
    model_audio_for,
)
from agent.audio.pcm import FRAME_MS, SIP_RATE, frame_bytes, frame_samples
from agent.audio.playout import Playout
from agent.bridge.actions import (
    Action,
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
from agent.bridge.barge_in import WEBRTC_YIELD_GAP_MS, BargeIn, YieldWatch
from agent.bridge.events import (
    AgentItemStarted,
    AudioDelta,
    AudioDone,
    CallerHeard,
    CallerTranscript,
    DelegationRequested,
    FunctionCallDone,
    FunctionCallStarted,
    ItemAdded,
    ItemTruncated,
    McpApprovalRequested,
    McpCallDone,
    PlayoutCleared,
    PlayoutStarted,
    PlayoutStopped,
    ResponseCreated,
    ResponseDone,
    ServerError,
    ServerEvent,
    SessionClosed,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    TrackAudio,
    TranscriptDelta,
    TranscriptDone,
)
from agent.bridge.filler import FILLER_ITEM, HOLDING_LINE, SPOKEN, TONE, ToolFiller, thinking_sound
from agent.bridge.limits import Ask, CallLimits, Finish
from agent.bridge.opening import (
    AmdOpening,
    AwaitGreetingEnd,
    Converse,
    EndCall,
    LeaveMessage,
    Move,
)
from agent.bridge.outcome import AGENT, TRANSFER, CallOutcome
from agent.bridge.requests import (
    AppendAudio,
    CancelResponse,
    ClientRequest,
    ConfigureSession,
    CreateResponse,
    DelegationResult,
    SessionSpec,
    SetAudioFormat,
    Truncate,
)
from agent.bridge.track import TAIL_MS, TrackAttribution
from agent.bridge.transcript import Line, TranscriptBook
from agent.bridge.turns import TurnTimer
from agent.outbound.amd_settings import AmdSettings
from agent.tools.dtmf import DtmfCollector, pressed_text
from agent.tools.protocol import ToolProtocol

#: Two short beeps, queued for the caller when the realtime session drops.
NOTICE_ITEM = "notice:session-lost"
#: The recording notice, played on answer before the greeting.
RECORDING_NOTICE_ITEM = "notice:recording"
_NOTICE_TONE = tone(660, 150, SIP_RATE, -16.0) + bytes(800 * 2) + tone(660, 150, SIP_RATE, -16.0)
RESUME_INSTRUCTIONS = (
    "The phone line to you dropped for a moment and is back; the conversation so far is above. "
    "Apologise in one short sentence and ask the caller to repeat what they said last."
)
REALTIME = "realtime"
LIVE = "live"
#: A session's replacement is looked for this long before its end (at most a quarter of the
#: session's life), at the first quiet moment; this long before the end it goes ahead anyway.
ROLLOVER_LEAD_MS = 120_000
ROLLOVER_FORCE_MS = 15_000
#: The caller counts as talking this long after their last transcript (GPT-Live reports no
#: speech boundaries).
CALLER_TALKING_MS = 1500
#: A spoken delegation result longer than this is cut (GPT-Live takes 500 tokens).
MAX_DELEGATION_TEXT = 1500
#: After the last frame left the playout buffer, the SIP engine still encodes and sends it.
LAST_FRAME_MS = 40
#: Longest wait for the agent's last words before a hang-up or transfer goes ahead anyway.
QUIET_WAIT_MS = 20_000
#: The playout item of the music on hold.
MUSIC_ITEM = "music:hold"
#: Music kept queued while it plays (topped up a second at a time, checked this often).
MUSIC_QUEUE_MS = 1500
MUSIC_CHECK_MS = 500
#: A REFER with no final outcome after this long failed: the caller is taken off hold.
TRANSFER_OUTCOME_MS = 32_000
_CANCEL_RACED = "response_cancel_not_active"
_RESPONSE_BUSY = "conversation_already_has_active_response"


@dataclass(frozen=True)
class BridgeConfig:
    """What one call's bridge is configured with (built by the shell from the profile)."""

    session: SessionSpec
    greeting: str = ""
    resampler_quality: str = "LQ"
    g711_passthrough: bool = False
    append_batch_ms: int = 20
    #: The session's VAD cancels a response itself on speech (``interrupt_response``).
    server_interrupts: bool = True
    #: The silence the server's VAD waits for before it says the caller stopped: its
    #: ``audio_end_ms`` includes it (server_vad's ``silence_duration_ms``; 0 when unknown).
    vad_silence_ms: int = 0
    #: A barge-in trigger while the agent talks cuts it only once this much caller audio above
    #: ``min_barge_in_dbfs`` was measured here (0: at once).
    min_barge_in_ms: int = 0
    min_barge_in_dbfs: float = -40.0
    reconnect_attempts: int = 1
    #: How long the agent waits for the notice to play out before hanging up.
    notice_wait_ms: int = 5000
    dtmf_actions: Mapping[str, str] = field(default_factory=dict)
    dtmf_batch_ms: int = 1200
    dtmf_to_model: bool = True
    #: "realtime" or "live".
    protocol: str = REALTIME
    #: A session is replaced before it has run this long.
    max_session_ms: float = 3_600_000.0
    #: Wall clock (Unix ms) minus the bridge's clock, to place a server's ``expires_at``.
    wall_offset_ms: float = 0.0
    #: Server-side MCP tools needing approval: server label -> the tools the agent approves.
    mcp_approve: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: Silence this long (ms) gets "are you still there?", twice the goodbye (0: never).
    silence_hangup_ms: float = 0.0
    #: The call ends at this length (ms, from the answer; 0: never), after a goodbye said
    #: ``max_call_goodbye_ms`` before.
    max_call_ms: float = 0.0
    max_call_goodbye_ms: float = 30_000.0
    #: While tools run longer than ``filler_after_ms``: "tone", "spoken" or "" (nothing).
    filler: str = ""
    filler_after_ms: float = 1500.0
    #: The session runs over WebRTC: its audio is the media track's (48 kHz), not deltas.
    webrtc: bool = False
    #: Hold the caller (music on hold) during a transfer, resume when it fails.
    transfer_hold: bool = False
    #: What the held caller hears (None: the built-in loop).
    hold_music: HoldMusic | None = None
    #: An outbound call's answering-machine detection (None: the agent speaks on the answer),
    #: and what the model is told to say as the voicemail message.
    amd: AmdSettings | None = None
    voicemail_instructions: str = ""


@dataclass
class Step:
    """What one input led to, in order within each list."""

    requests: list[ClientRequest] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)

    def add(self, other: Step) -> Step:
        self.requests.extend(other.requests)
        self.actions.extend(other.actions)
        self.lines.extend(other.lines)
        return self

    def note(self, event: str, level: str = "info", **fields: object) -> None:
        self.actions.append(Note(event, level, dict(fields)))


@dataclass
class _Response:
    """The response in progress."""

    response_id: str
    tag: str | None
    interrupted: bool = False
    cancel_sent: bool = False


@dataclass
class _QuietWait:
    """Call control waiting for the agent's last words to be heard."""

    action: HangUp | Transfer
    deadline: float
    quiet_since: float | None = None
    #: Quiet counts only once the agent has spoken since (a goodbye asked of the model).
    after_speech: bool = False


class CallBridge:
    """One call's decisions."""

    def __init__(self, config: BridgeConfig) -> None:
        self.config = config
        self.call_rate = SIP_RATE
        self.playout = Playout()
        session_audio = TRACK_PCM16 if config.webrtc else PCM16
        self._audio: ModelAudio = ResampledPcm16(config.resampler_quality, session=session_audio)
        self._track = TrackAttribution()
        #: WebRTC: when the playout that stopped has had its last frames (see ``TAIL_MS``).
        self._track_done_at: float | None = None
        self.barge_in = BargeIn(
            self.playout,
            output_rate=self._audio.rate,
            min_ms=config.min_barge_in_ms,
            min_dbfs=config.min_barge_in_dbfs,
        )
        self.limits = CallLimits(
            config.silence_hangup_ms, config.max_call_ms, config.max_call_goodbye_ms
        )
        self.filler = ToolFiller(config.filler, config.filler_after_ms)
        self._filler_sound = b""
        #: Goodbyes and questions waiting for the response in progress to end (Realtime).
        self._to_say: list[str] = []
        self.tools = ToolProtocol()
        self.dtmf = DtmfCollector(config.dtmf_actions, config.dtmf_batch_ms, config.dtmf_to_model)
        self.book = TranscriptBook()
        self.outcome = CallOutcome()
        self.turns = TurnTimer()
        #: Caller audio sent to the current session, in ms (where its VAD's times point).
        self._session_audio_ms = 0
        #: The recording notice is playing: the line is not the model's yet.
        self._announcing = False
        self.session_ready = False
        self._response: _Response | None = None
        self._cut_responses: set[str] = set()
        self._down_item: str | None = None
        self._confirmed = False
        self._held = False
        self._pending = bytearray()
        self._waits: list[_QuietWait] = []
        self._transferring: str | None = None
        #: The agent holds the caller for a transfer: music plays, the model is cut off.
        self._agent_holding = False
        #: The far end answered our hold's re-INVITE: a failed transfer must resume.
        self._sip_held = False
        self._music: MusicLoop | None = None
        self._music_check_at: float | None = None
        #: When a sent REFER counts as failed if no final outcome came.
        self._transfer_deadline: float | None = None
        #: Times the agent held the caller (for the call record).
        self.agent_holds = 0
        self._reconnects_left = config.reconnect_attempts
        self._ended = False
        self.frames_sent = 0
        self.audio_deltas = 0
        self._live = config.protocol == LIVE
        #: GPT-Live's format is fixed at start: its configuration waits for the call's codec;
        #: over WebRTC the media negotiates it (Opus), and the configuration need not wait.
        self._format_known = not self._live or config.webrtc
        self._config_waiting = False
        self._yield = self._yield_watch()
        self._caller_speaking = False  # Realtime: between the server's speech events
        self._caller_heard_at: float | None = None  # GPT-Live: the latest caller transcript
        self._in_flight = 0  # tool calls and delegations whose results are still to come
        self._rollover_at: float | None = None
        self._rollover_force_at: float | None = None
        self._rolling = False
        self._closed_reason = ""
        #: Answering-machine detection, from the answer until its last move.
        self._opening: AmdOpening | None = None
        #: The recording notice, held while detection keeps the line silent.
        self._notice = b""
        #: What the agent's first response says: the greeting, or the voicemail message.
        self._first_words = config.greeting
        self._message_max_ms = 0

    # -- the session -------------------------------------------------------------------------
    def offer_tools(self, declarations: list[dict[str, object]]) -> None:
        """The function tools every session of this call is configured with."""
        spec = dataclasses.replace(self.config.session, tools=list(declarations))
        self.config = dataclasses.replace(self.config, session=spec)

    def session_config(self) -> Step:
        """The configuration a newly opened session gets (before any other request), with
        the conversation so far. A GPT-Live session's waits for the call's codec (see
        ``media_started``): ``config_waiting`` is then True."""
        self.session_ready = False
        self._closed_reason = ""
        self._session_audio_ms = 0
        if not self._format_known:
            self._config_waiting = True
            return Step()
        return Step(requests=[ConfigureSession(self._spec())])

    @property
    def config_waiting(self) -> bool:
        """The session's configuration waits for the call's codec (GPT-Live)."""
        return self._config_waiting

    def _spec(self) -> SessionSpec:
        return dataclasses.replace(
            self.config.session, codec=self._audio.codec, history=self.book.history
        )

    def server_event(self, event: ServerEvent, now: float) -> Step:
        """One event of the model's side; every event is read here, and only here."""
        step = Step()
        if isinstance(event, AudioDelta):
            self._play(event)
            if event.voiced:
                self._yield.audio(now)
        elif isinstance(event, TrackAudio):
            delta = self._track.attribute(event.audio, now)
            if delta is not None:
                self._play(delta)
                self._yield.audio(now)
        elif isinstance(event, AgentItemStarted):
            self._track.item_started(event.response_id, event.item_id)
        elif isinstance(event, PlayoutStarted):
            self._track.started(event.response_id)
            self._track_done_at = None
        elif isinstance(event, PlayoutStopped):
            self._track.stopped(now)
            self._track_done_at = now + TAIL_MS
        elif isinstance(event, PlayoutCleared):
            self._track.cleared()
            self._track_done_at = None
            if self._agent_queued() and not self._cut_current():
                # Cleared on the server's own account: what is queued here will not be
                # continued either, so it stops now as on a barge-in.
                step.add(self._cut())
        elif isinstance(event, (SpeechStarted, SpeechStopped, CallerHeard, CallerTranscript)):
            self.limits.caller_active(now)
            self._caller_event(event, now, step)
        elif isinstance(event, AudioDone):
            self.barge_in.audio_done(event.item_id)
            self._finish_item(event.item_id)
            self._write_heard(step)
        elif isinstance(event, TranscriptDelta):
            self.book.agent_delta(event.item_id, event.text)
        elif isinstance(event, TranscriptDone):
            self.book.agent_final(event.item_id, event.text)
            self._write_heard(step)
        elif isinstance(event, ResponseCreated):
            self._response = _Response(event.response_id, event.tag)
            self.tools.response_created(event.tag)
        elif isinstance(event, ResponseDone):
            self._response_done(event.response_id, step)
        elif isinstance(event, ItemTruncated):
            self._truncated(event, step)
        elif isinstance(event, FunctionCallStarted):
            self.tools.function_started(event.item_id, event.name)
        elif isinstance(event, FunctionCallDone):
            call = self.tools.function_done(event)
            if call is not None:
                self._in_flight += 1
                self.filler.tool_started(now)
                step.actions.append(RunTool(call.name, call.arguments, call.call_id))
        elif isinstance(event, DelegationRequested):
            self._delegated(event, step, now)
        elif isinstance(event, McpApprovalRequested):
            self._mcp_approval(event, step)
        elif isinstance(event, McpCallDone):
            step.lines.append(
                self.book.event(
                    "mcp_call", server=event.server_label, name=event.name, error=event.error
                )
            )
            step.note("mcp_call", server=event.server_label, name=event.name, error=event.error)
        elif isinstance(event, SessionClosed):
            self._closed_reason = event.reason
            step.note("session_closed_by_server", "warning", reason=event.reason)
        elif isinstance(event, ItemAdded):
            self.tools.item_added(event.item_id)
        elif isinstance(event, SessionReady):
            self.session_ready = True
            self._plan_rollover(now, event.expires_at)
        elif isinstance(event, ServerError):
            self._server_error(event, step)
        return step

    def _caller_event(
        self,
        event: SpeechStarted | SpeechStopped | CallerHeard | CallerTranscript,
        now: float,
        step: Step,
    ) -> None:
        """The caller's side of the conversation: speech boundaries, transcripts."""
        if isinstance(event, SpeechStarted):
            self._caller_speaking = True
            self.turns.caller_started()
            if self.barge_in.speech_started(self.agent_speaking):
                step.add(self._cut())
            elif self.barge_in.pending:
                step.note("barge_in_held", min_ms=self.barge_in.min_ms)
        elif isinstance(event, SpeechStopped):
            self._caller_speaking = False
            ignored = self.barge_in.ignored
            self.barge_in.speech_stopped()
            # The audio sent after the point where speech ended is how long ago it ended;
            # the VAD's point is after the silence it waited for.
            since = 0 if event.audio_end_ms is None else self._session_audio_ms - event.audio_end_ms
            self.turns.caller_stopped(now - max(since, 0) - self.config.vad_silence_ms)
            if self.barge_in.ignored > ignored:
                step.lines.append(self.book.event("barge_in_ignored"))
                step.note("barge_in_ignored", min_ms=self.barge_in.min_ms)
        elif isinstance(event, CallerHeard):
            self._caller_heard_at = now
            self.book.caller_partial(event.item_id, event.text)
            self._yield.caller_heard(now)
            self.turns.caller_heard(now)
            self._check_yield(now, step)
        else:
            line = self.book.caller(event.item_id, event.text)
            step.lines.append(line)
            step.note("transcript", role="caller", text=line["text"])

    def session_lost(self, reason: str, now: float) -> Step:
        """The session dropped mid-call: tell the caller, then reconnect or hang up."""
        step = Step()
        self._close_caller_turn(step)
        step.lines.append(self.book.event("realtime_session_lost", reason=reason))
        step.note("realtime_session_lost", "warning", reason=reason)
        self.session_ready = False
        # Tell the caller something happened rather than leave them in silence.
        self.playout.push(NOTICE_ITEM, _NOTICE_TONE)
        self._new_conversation()
        if self._closed_reason == "content":
            # The provider's safety filter ended the session: a new one would be evading it.
            step.add(self.reconnect_failed(now))
        elif self._reconnects_left > 0:
            self._reconnects_left -= 1
            step.actions.append(Reconnect())
        else:
            step.add(self.reconnect_failed(now))
        return step

    def session_restored(self) -> Step:
        """A new session took the configuration: the model apologises and asks again (unless
        it has not spoken yet: answering-machine detection still decides how it opens)."""
        step = Step()
        if not self._opening_silent():
            step.requests.append(CreateResponse(instructions=RESUME_INSTRUCTIONS))
        step.note("realtime_session_restored")
        return step

    def reconnect_failed(self, now: float) -> Step:
        """No session to go on with: hang up once the notice has been heard."""
        return self._wait_quiet(
            HangUp(AGENT, "the realtime session was lost"), now, self.config.notice_wait_ms
        )

    def rollover_config(self) -> Step:
        """The configuration of the session replacing the current one (carrying the
        conversation over); the current one stays in use until ``rollover_done``."""
        return Step(requests=[ConfigureSession(self._spec())])

    def rollover_done(self, now: float) -> Step:
        """The replacement took over: it is a new conversation (from the carried history)."""
        self._rolling = False
        # The replacement's own deadlines (planned when it became ready) outlive the reset.
        planned = (self._rollover_at, self._rollover_force_at)
        self._new_conversation()
        self._rollover_at, self._rollover_force_at = planned
        self.session_ready = True
        step = Step()
        self._close_caller_turn(step)
        step.lines.append(self.book.event("realtime_session_replaced"))
        step.note("realtime_session_replaced", carried_turns=len(self.book.history))
        return step

    def rollover_failed(self, why: str, now: float) -> Step:
        """No replacement could be opened: go on with the current session and try again
        later (it may still be cut off at its end, then the usual reconnect follows)."""
        self._rolling = False
        self._rollover_at = now + min(30_000.0, self.config.max_session_ms / 20)
        step = Step()
        step.note("realtime_session_rollover_failed", "warning", error=why)
        return step

    # -- the call ----------------------------------------------------------------------------
    def media_started(self, codec: str, rate: int) -> Step:
        """The call's codec is negotiated: choose the session format (G.711 passthrough)."""
        step = Step()
        rate_changed = rate != self.call_rate and not self.playout.queued_samples
        if rate_changed:
            self.call_rate = rate
            self.playout = Playout(frame_samples(rate), rate)
            self.barge_in.playout = self.playout
        if self._live:
            return self._live_media(codec, rate_changed, step)
        audio = model_audio_for(
            codec,
            self.config.g711_passthrough,
            self.config.resampler_quality,
            self.call_rate,
            webrtc=self.config.webrtc,
        )
        if audio.codec != self._audio.codec:
            # A second session.update before any audio or the greeting: the codec is known
            # only once the answer's SDP is negotiated.
            step.requests.append(SetAudioFormat(audio.codec))
            if audio.codec != "pcm16":
                step.note("g711_passthrough", codec=audio.codec)
        if rate_changed or audio.codec != self._audio.codec:
            self._audio = audio
            self.barge_in.output_rate = audio.rate
        return step

    def _live_media(self, codec: str, rate_changed: bool, step: Step) -> Step:
        """GPT-Live takes the call's own codec (G.711 at 8 kHz, PCM at 16 kHz): no resampling;
        the session's configuration, held until now, goes out with it. Over WebRTC the
        track's 48 kHz, whatever the call's codec (the configuration went out already)."""
        if self.config.webrtc:
            audio = model_audio_for(
                codec, False, self.config.resampler_quality, self.call_rate, webrtc=True
            )
        else:
            audio = live_audio_for(codec, self.config.resampler_quality, self.call_rate)
        if rate_changed or audio.codec != self._audio.codec:
            self._audio = audio
            self.barge_in.output_rate = audio.rate
        step.note("live_audio_format", codec=audio.codec, call_codec=codec)
        self._format_known = True
        if self._config_waiting:
            self._config_waiting = False
            step.requests.append(ConfigureSession(self._spec()))
        return step

    def call_confirmed(self, now: float, notice: bytes = b"") -> Step:
        """The ACK came: caller audio may reach the model, and the agent may speak.

        With a recording ``notice`` (PCM16 at the call's rate) the caller hears it first:
        until it has played, no caller audio reaches the model (so nothing the caller says
        can talk over or answer it) and the greeting waits. With answering-machine detection
        the line stays silent (the notice too) until the verdict (see ``opening``)."""
        self._confirmed = True
        self.limits.start(now)
        amd = self.config.amd
        if amd is not None:
            self._opening = AmdOpening(amd, self.config.voicemail_instructions, self.call_rate, now)
            self._notice = notice
            return Step(actions=[Note("amd_listening", "info", {"max_ms": amd.max_detect_ms})])
        return self._open_line(now, notice)

    def _open_line(self, now: float, notice: bytes) -> Step:
        """The line is the agent's: the recording notice, then its first words."""
        if notice:
            self.playout.push(RECORDING_NOTICE_ITEM, notice)
            self._announcing = True
            return Step(
                actions=[
                    Note("recording_notice", "info", {"ms": len(notice) * 500 // self.call_rate})
                ]
            )
        return self._greet(now)

    def _greet(self, now: float) -> Step:
        """The agent's first words: the greeting, or the voicemail message (then it hangs up
        once the message was heard)."""
        step = Step()
        if self._first_words:
            step.requests.append(CreateResponse(instructions=self._first_words))
        if self._message_max_ms:
            hang_up = HangUp(AGENT, "answering machine: message left")
            step.add(self._wait_quiet(hang_up, now, self._message_max_ms, after_speech=True))
        return step

    def _open(self, moves: list[Move], now: float) -> Step:
        """What answering-machine detection decided: talk, wait, leave the message, end."""
        step = Step()
        for move in moves:
            if isinstance(move, LeaveMessage):
                end = move.end
                fields = {"how": end.how, "at_ms": end.at_ms, "beep_ms": end.beep_ms,
                          "beep_hz": end.beep_hz}  # fmt: skip
                step.lines.append(self.book.event("amd_greeting_end", **fields))
                step.actions.append(Note("amd_greeting_end", "info", dict(fields)))
                if not move.instructions:
                    reason = "answering machine: no voicemail instructions to speak"
                    step.add(self._hang_up(HangUp(AGENT, reason)))
                    continue
                self._first_words = move.instructions
                self._message_max_ms = move.max_ms
                step.add(self._open_line(now, self._notice))
                continue
            verdict = move.verdict
            fields = {"verdict": verdict.verdict, "decided_ms": verdict.decided_ms,
                      "reason": verdict.reason}  # fmt: skip
            if isinstance(move, EndCall):
                fields["then"] = "hang up"
            elif isinstance(move, AwaitGreetingEnd):
                fields["then"] = "message after the greeting"
            else:
                fields["then"] = "talk"
            step.lines.append(self.book.event("amd", **fields))
            step.actions.append(Note("amd_verdict", "info", dict(fields)))
            if isinstance(move, Converse):
                step.add(self._open_line(now, self._notice))
            elif isinstance(move, EndCall):
                step.add(self._hang_up(HangUp(AGENT, f"answering machine: {verdict.reason}")))
        return step

    def _opening_silent(self) -> bool:
        """Answering-machine detection keeps the agent silent (no verdict yet, or the
        machine's greeting still runs)."""
        return self._opening is not None and self._opening.deciding

    @property
    def amd_record(self) -> dict[str, object] | None:
        """The call record's ``amd`` (None: no detection ran, or no verdict yet)."""
        return self._opening.record if self._opening is not None else None

    def caller_frame(self, pcm: bytes, now: float) -> Step:
        """One 20 ms frame of caller audio (PCM16 at the call's rate)."""
        step = Step()
        if not self._confirmed or self._ended or self._held:
            return step
        opening = self._opening
        if opening is not None and opening.listening:
            step.add(self._open(opening.frame(pcm), now))
        if (
            not self.session_ready
            or self._ended
            or self._announcing
            or (opening is not None and opening.holding)
            or self._agent_holding
        ):
            # Before the ACK nothing of the line reaches the (billed) model; nor while the
            # recording notice plays, nor while the far end holds the call (its music), nor
            # while answering-machine detection listens (see ``opening``), nor while the
            # agent holds the caller for a transfer.
            return step
        if self.barge_in.pending and self.barge_in.caller_audio(FRAME_MS, rms_dbfs(pcm)):
            step.add(self._cut())
        self._pending += pcm
        if len(self._pending) >= self.config.append_batch_ms // FRAME_MS * frame_bytes(
            self.call_rate
        ):
            audio = self._audio.to_model(bytes(self._pending))
            frames = len(self._pending) // frame_bytes(self.call_rate)
            self.frames_sent += frames
            self._session_audio_ms += frames * FRAME_MS
            self._pending.clear()
            if audio:
                step.requests.append(AppendAudio(audio))
        return step

    def far_end_hold(self, held: bool) -> Step:
        """The far end held (True) or resumed the call: the model hears nothing meanwhile,
        and the agent's queued audio waits (the playout pauses) instead of going into a held
        line: it plays on from where it was once the call resumes."""
        step = Step()
        if held == self._held:
            return step
        self._held = held
        self.playout.paused = held
        # The caller on hold is not silent: the silence count starts over on resume.
        self.limits.paused()
        step.lines.append(self.book.event("hold" if held else "resume"))
        step.note("call_held" if held else "call_resumed")
        return step

    def caller_dtmf(self, digit: str, method: str, now: float) -> Step:
        """A key the caller pressed (RFC 4733 or SIP INFO)."""
        step = Step(lines=[self.book.event("dtmf", digit=digit, method=method)])
        step.note("dtmf_received", digit=digit, method=method)
        self.limits.caller_active(now)
        if not self.session_ready or self._opening_silent():
            # Keys during answering-machine detection stay in the transcript only: telling
            # the model would have it answer before the verdict.
            return step
        press = self.dtmf.press(digit, now)
        if press.flush:
            step.requests.extend(self._tell(pressed_text(press.flush)))
        if press.action is not None:
            action = press.action
            arguments = json.dumps(dict(action.arguments))
            step.actions.append(RunTool(action.tool, arguments, origin=f"dtmf:{action.digit}"))
        return step

    def dtmf_action_failed(self, digit: str, tool: str, output: str) -> Step:
        """A key's action failed: the caller asked with a key, so the model explains."""
        note = f"The caller pressed {digit} for {tool}; {output}"
        return Step(requests=self._tell(note, role="system"))

    def tool_result(self, call_id: str, output: str, respond: bool = True) -> Step:
        """A tool's output for the model's function call ``call_id``."""
        self._in_flight = max(0, self._in_flight - 1)
        step = self._stop_filler()
        step.requests.extend(
            self.tools.output(
                call_id, output, respond=respond, response_active=self._response is not None
            )
        )
        return step

    def delegation_result(self, delegation_id: str, text: str, spoken: bool = True) -> Step:
        """The outcome of work GPT-Live delegated: for the model to say (or, not ``spoken``,
        to know), matched to its delegation."""
        self._in_flight = max(0, self._in_flight - 1)
        step = self._stop_filler()
        step.lines.append(
            self.book.event("delegation_done", delegation_id=delegation_id, spoken=spoken)
        )
        if text.strip() and not self._ended:
            result = DelegationResult(delegation_id, text.strip()[:MAX_DELEGATION_TEXT], spoken)
            step.requests.append(result)
        return step

    def hang_up_when_quiet(
        self, reason: str, now: float, ended_by: str = AGENT, wait_ms: int = QUIET_WAIT_MS
    ) -> Step:
        """Hang up once the agent's current words have been heard (at most ``wait_ms``)."""
        return self._wait_quiet(HangUp(ended_by, reason), now, wait_ms)

    def transfer_when_quiet(self, uri: str, now: float) -> Step:
        """Transfer once the agent's current words have been heard (at most 20 s)."""
        return self._wait_quiet(Transfer(uri), now, QUIET_WAIT_MS)

    def transfer_status(self, code: int, reason: str, final: bool) -> Step:
        """REFER progress; a final 2xx means the caller is connected elsewhere."""
        step = Step(
            lines=[self.book.event("transfer_status", code=code, reason=reason, final=final)]
        )
        if not final or self._transferring is None:
            return step
        uri, self._transferring = self._transferring, None
        self._transfer_deadline = None
        finished = TransferFinished(code, reason)
        if finished.ok:
            step.actions.append(finished)
            step.add(self._hang_up(HangUp(TRANSFER, f"transferred to {uri}")))
            return step
        # Back to the caller first, then the tool (and so the model) hears of the failure.
        step.add(self._release_hold(f"{code} {reason}".strip()))
        step.actions.append(finished)
        return step

    def transfer_not_sent(self, why: str) -> Step:
        """The REFER could not be sent: the caller stays, and the tool is told why."""
        self._transferring = None
        self._transfer_deadline = None
        step = self._release_hold(why)
        step.actions.append(TransferFinished(0, why))
        return step

    def agent_hold_done(self, ok: bool, why: str, now: float) -> Step:
        """Our hold's re-INVITE was answered (``ok``) or failed (``why``): the REFER goes
        now either way (a caller not on hold hears the music all the same)."""
        step = Step()
        if not self._agent_holding or self._transferring is None or self._ended:
            return step
        self._sip_held = ok
        if not ok:
            step.note("agent_hold_failed", "warning", reason=why)
        step.add(self._send_transfer(self._transferring, now))
        return step

    def _send_transfer(self, uri: str, now: float) -> Step:
        self._transfer_deadline = now + TRANSFER_OUTCOME_MS
        return Step(actions=[Transfer(uri)])

    def _start_hold(self, now: float) -> Step:
        """The agent holds the caller: music on, the model's side cut off both ways."""
        step = Step(actions=[HoldCall()])
        self._agent_holding = True
        self.agent_holds += 1
        if self._music is None:
            music = self.config.hold_music
            if music is None:
                music = builtin_music(self.call_rate)
            self._music = MusicLoop(music.at_rate(self.call_rate))
        self._top_up_music(now)
        step.lines.append(self.book.event("transfer_hold"))
        step.note("agent_hold")
        return step

    def _release_hold(self, why: str) -> Step:
        """Off the agent's hold: the music stops on the next frame, the call resumes."""
        step = Step()
        if not self._agent_holding:
            return step
        self._agent_holding = False
        self._music_check_at = None
        dropped = self.playout.drop(MUSIC_ITEM)
        if self._sip_held:
            self._sip_held = False
            step.actions.append(ResumeCall())
        step.lines.append(self.book.event("transfer_resume", reason=why))
        step.note("agent_resume", reason=why, music_dropped_ms=dropped * 1000 // self.call_rate)
        return step

    def _top_up_music(self, now: float) -> None:
        """Keep ``MUSIC_QUEUE_MS`` of the music queued while the agent holds the caller."""
        if self._music is None:
            return
        want = self.call_rate * MUSIC_QUEUE_MS // 1000 - self.playout.queued_of(MUSIC_ITEM)
        if want > 0:
            self.playout.push(MUSIC_ITEM, self._music.take(want * 2))
        self._music_check_at = now + MUSIC_CHECK_MS

    def call_ended(self, code: int, text: str, answered: bool) -> Step:
        """The SIP call is gone: settle who ended it, and write what the hang-up cut short."""
        self._ended = True
        self.outcome.disconnected(code, text, answered)
        step = Step()
        for item_id, barged_in in self.book.pending_agent_items():
            heard_ms = self.playout.played_ms(item_id)
            total_ms = self.barge_in.received_ms(item_id)
            if barged_in or heard_ms < total_ms:
                cause = "barge-in" if barged_in else "hang-up"
                line = self.book.agent_truncated(item_id, heard_ms, total_ms, cause)
            else:
                line = self.book.heard(item_id)
            if line is not None:
                step.lines.append(line)
        for _ in self._waits:
            step.actions.append(HungUp())
        self._waits.clear()
        if self._transferring is not None:
            self._transferring = None
            step.actions.append(TransferFinished(487, "the call ended"))
        self._agent_holding = self._sip_held = False
        self._music_check_at = self._transfer_deadline = None
        return step

    def tick(self, now: float) -> Step:
        """Time passed: DTMF batches, call control waiting for quiet, heard lines."""
        step = Step()
        opening = self._opening
        if opening is not None and opening.listening and self._confirmed and not self._ended:
            step.add(self._open(opening.tick(now), now))
        if self._announcing and not self.playout.queued_samples:
            self._announcing = False
            step.add(self._greet(now))
        self.turns.check(self.playout, now)
        digits = self.dtmf.due(now)
        if digits:
            step.requests.extend(self._tell(pressed_text(digits)))
        if self._track_done_at is not None and now >= self._track_done_at:
            self._track_finished()
        if self._waits:
            self._check_waits(now, step)
        if self._agent_holding and not self._ended:
            self._top_up_music(now)
        if self._transfer_deadline is not None and now >= self._transfer_deadline:
            step.note("transfer_outcome_timeout", "warning", after_ms=TRANSFER_OUTCOME_MS)
            step.add(self.transfer_status(408, "no transfer outcome", True))
        self._check_yield(now, step)
        self._check_rollover(now, step)
        if self._confirmed and not self._ended:
            self._check_limits(now, step)
            self._check_filler(now, step)
        self._write_heard(step)
        return step

    @property
    def next_deadline(self) -> float | None:
        """When ``tick`` must run at the latest (None: media ticks are enough). Media ticks,
        every 20 ms, also see waits for quiet through; their deadline is the backstop."""
        deadlines = [wait.deadline for wait in self._waits]
        for at in (self._music_check_at, self._transfer_deadline):
            if at is not None:
                deadlines.append(at)
        if self._track_done_at is not None:
            deadlines.append(self._track_done_at)
        for deadline in (
            self.dtmf.next_deadline,
            self._yield.next_deadline,
            self.limits.next_deadline,
            self.filler.next_deadline,
        ):
            if deadline is not None:
                deadlines.append(deadline)
        if self._rollover_at is not None and not self._rolling:
            deadlines.append(self._rollover_at)
        opening = self._opening
        if opening is not None and opening.next_deadline is not None and not self._ended:
            deadlines.append(opening.next_deadline)
        return min(deadlines) if deadlines else None

    @property
    def agent_speaking(self) -> bool:
        """True while agent audio is queued for, or still arriving to, the caller (a filler
        sound is not the agent speaking)."""
        if self._agent_queued():
            return True
        if self._track.playing or self._track_done_at is not None:
            return True  # WebRTC: the server still streams (or its last frames are on the way)
        return self._response is not None and not self._response.interrupted

    @property
    def interruptions(self) -> int:
        return self.barge_in.interruptions

    @property
    def ignored_barge_ins(self) -> int:
        """Barge-in triggers dropped as too short to be speech (``min_barge_in_ms``)."""
        return self.barge_in.ignored

    @property
    def fillers(self) -> int:
        """How often the caller heard a filler while tools ran."""
        return self.filler.fillers

    # -- internals ---------------------------------------------------------------------------
    def _play(self, event: AudioDelta) -> None:
        if event.response_id in self._cut_responses:
            return  # late audio of a response the caller talked over
        if self._agent_holding:
            return  # the caller is on hold for a transfer: the agent does not talk
        width = self._audio.sample_bytes
        audio = event.audio[: len(event.audio) - len(event.audio) % width]
        self.barge_in.received(event.response_id, event.item_id, len(audio) // width)
        if self.filler.playing:
            # The model speaks: the thinking sound makes way at once.
            self.playout.drop(FILLER_ITEM)
            self.filler.interrupted()
        if event.item_id != self._down_item:
            self._finish_item(self._down_item)
            self._down_item = event.item_id
        self.audio_deltas += 1
        pcm = self._audio.from_model(audio)
        if pcm:
            self.playout.push(event.item_id, pcm)
            self.turns.agent_audio(event.item_id)

    def _track_finished(self) -> None:
        """WebRTC: a playout's last frames are in; its item's audio is complete."""
        self._track_done_at = None
        item_id = self._down_item
        if item_id is not None:
            self.barge_in.audio_done(item_id)
            self._finish_item(item_id)

    def _cut_current(self) -> bool:
        """True when the response in progress was already cut short."""
        response = self._response
        return response is not None and response.interrupted

    def _finish_item(self, item_id: str | None) -> None:
        """End of an item's audio: release what the resampler still holds for it."""
        if item_id is None or item_id != self._down_item:
            return
        tail = self._audio.flush_from_model()
        if tail:
            self.playout.push(item_id, tail)
        self._down_item = None

    def _cut(self) -> Step:
        """The caller talks over the agent: silence the line now and tell the model."""
        step = Step()
        cut = self.barge_in.cut()
        self.filler.interrupted()  # the flush took the thinking sound too
        # What the resampler still holds of the cut item was never heard: drop it.
        self._audio.reset_from_model()
        self._down_item = None
        response = self._response
        if cut is not None:
            step.requests.append(Truncate(cut.item_id, cut.audio_end_ms))
            if self._live:
                # No truncation to confirm: what the caller heard is known now.
                total_ms = self.barge_in.received_ms(cut.item_id)
                line = self.book.agent_truncated(cut.item_id, cut.audio_end_ms, total_ms)
                if line is not None:
                    step.lines.append(line)
            else:
                self.book.agent_interrupted(cut.item_id)
        # The response in progress stops too, unless the cut audio was an earlier one's.
        stops = response is not None and not response.interrupted
        if (
            response is not None
            and stops
            and (cut is None or cut.response_id == response.response_id)
        ):
            response.interrupted = True
            self._cut_responses.add(response.response_id)
            if not self.config.server_interrupts and not response.cancel_sent:
                response.cancel_sent = True
                step.requests.append(CancelResponse())
        if cut is not None:
            step.note(
                "barge_in",
                item_id=cut.item_id,
                audio_end_ms=cut.audio_end_ms,
                cancel=any(isinstance(r, CancelResponse) for r in step.requests),
            )
        return step

    def _truncated(self, event: ItemTruncated, step: Step) -> None:
        line = self.book.agent_truncated(
            event.item_id, event.audio_end_ms, self.barge_in.received_ms(event.item_id)
        )
        if line is not None:
            step.lines.append(line)
            step.note("transcript", role="agent", text=line["text"], interrupted=True)

    def _response_done(self, response_id: str, step: Step) -> None:
        if self._response is not None and self._response.response_id in (response_id, ""):
            self._response = None
        self._cut_responses.discard(response_id)
        step.requests.extend(self.tools.response_done())

    def _server_error(self, event: ServerError, step: Step) -> None:
        if event.code == _CANCEL_RACED:
            # Our cancel crossed the server's response.done: nothing was left to cancel.
            if self._response is not None:
                self._response.cancel_sent = False
            step.note("cancel_raced_response_done", "debug")
            return
        if event.code == _RESPONSE_BUSY:
            self.tools.busy()
        step.note(
            "realtime_error",
            "warning",
            code=event.code,
            message=event.message,
            event_id=event.event_id,
        )

    def _write_heard(self, step: Step) -> None:
        """Write the agent lines whose audio the caller has heard to the end."""
        for item_id in self.book.held_final_items():
            if self.barge_in.fully_heard(item_id):
                line = self.book.heard(item_id)
                if line is not None:
                    step.lines.append(line)
                    step.note("transcript", role="agent", text=line["text"])

    def _close_caller_turn(self, step: Step) -> None:
        """The session is replaced while a caller turn is open (GPT-Live closes it only when
        the agent speaks): the old session will never close it, so it is written now, as the
        new session was given it."""
        line = self.book.close_caller_partial()
        if line is not None:
            step.lines.append(line)
            step.note("transcript", role="caller", text=line["text"])

    def _tell(self, text: str, role: str = "user") -> list[ClientRequest]:
        # GPT-Live answers a note on its own; no response to ask for, or to count.
        return self.tools.note(
            text, role=role, respond=not self._live, response_active=self._response is not None
        )

    def _delegated(self, event: DelegationRequested, step: Step, now: float) -> None:
        self._in_flight += 1
        self.filler.tool_started(now)
        step.lines.append(self.book.event("delegation", delegation_id=event.delegation_id))
        step.note("live_delegation", delegation_id=event.delegation_id)
        step.actions.append(Delegate(event.delegation_id, event.caller_text, self.book.history))

    def _mcp_approval(self, event: McpApprovalRequested, step: Step) -> None:
        allowed = self.config.mcp_approve.get(event.server_label, ())
        approve = event.name in allowed
        reason = "" if approve else "Not approved for phone calls."
        step.lines.append(
            self.book.event(
                "mcp_approval", server=event.server_label, name=event.name, approved=approve
            )
        )
        step.note("mcp_approval", server=event.server_label, name=event.name, approved=approve)
        step.requests.extend(
            self.tools.approval(
                event.item_id, approve, reason, response_active=self._response is not None
            )
        )

    def _yield_watch(self) -> YieldWatch:
        if self.config.protocol == LIVE and self.config.webrtc:
            return YieldWatch(gap_ms=WEBRTC_YIELD_GAP_MS)
        return YieldWatch()

    def _check_yield(self, now: float, step: Step) -> None:
        """GPT-Live gave the caller the floor: drop what is still queued of its audio."""
        if self._yield.due(now, self._agent_queued()):
            step.add(self._cut())

    # -- rolling over to a new session -------------------------------------------------------
    def _plan_rollover(self, now: float, expires_at: float | None) -> None:
        """A session is ready: when to look for a quiet moment to replace it."""
        end = now + self.config.max_session_ms
        if expires_at is not None:
            end = min(end, expires_at * 1000 - self.config.wall_offset_ms)
        life = max(end - now, 0.0)
        self._rollover_at = end - min(ROLLOVER_LEAD_MS, life / 4)
        self._rollover_force_at = end - min(ROLLOVER_FORCE_MS, life / 20)

    def _quiet(self, now: float) -> bool:
        """Nobody is talking and nothing is pending: a session can be swapped unheard."""
        return not (
            self.agent_speaking
            or self._caller_talking(now)
            or self._in_flight
            or self._waits
            or self._transferring is not None
        )

    def _check_rollover(self, now: float, step: Step) -> None:
        if self._rollover_at is None or self._rolling or not self.session_ready or self._ended:
            return
        if now < self._rollover_at:
            return
        forced = self._rollover_force_at is not None and now >= self._rollover_force_at
        if not (self._quiet(now) or forced):
            return
        self._rolling = True
        self._rollover_at = None
        step.actions.append(Rollover())
        step.note("realtime_session_rollover", forced=forced, turns=len(self.book.history))

    def _new_conversation(self) -> None:
        """A new session is a new conversation: forget the old responses and tool calls."""
        self._response = None
        self._cut_responses.clear()
        self.barge_in.reset()
        self.tools = ToolProtocol()
        self._yield = self._yield_watch()
        self._caller_speaking = False
        self._in_flight = 0
        self._rollover_at = None
        if self.filler.playing:
            self.playout.drop(FILLER_ITEM)
        self.filler.reset()
        self._to_say.clear()

    def _wait_quiet(
        self, action: HangUp | Transfer, now: float, wait_ms: float, after_speech: bool = False
    ) -> Step:
        self._waits.append(_QuietWait(action, now + wait_ms, after_speech=after_speech))
        step = Step()
        self._check_waits(now, step)
        return step

    def _check_waits(self, now: float, step: Step) -> None:
        quiet = not self.agent_speaking
        for wait in list(self._waits):
            if wait.after_speech:
                wait.after_speech = quiet  # still waiting for the goodbye to begin
            if wait.after_speech and now < wait.deadline:
                continue
            if quiet and wait.quiet_since is None:
                wait.quiet_since = now
            elif not quiet:
                wait.quiet_since = None
            heard = wait.quiet_since is not None and now - wait.quiet_since >= LAST_FRAME_MS
            if not heard and now < wait.deadline:
                continue
            self._waits.remove(wait)
            if isinstance(wait.action, HangUp):
                step.add(self._hang_up(wait.action))
            else:
                self._transferring = wait.action.uri
                if self.config.transfer_hold:
                    step.add(self._start_hold(now))  # the REFER follows the hold's answer
                else:
                    step.add(self._send_transfer(wait.action.uri, now))

    # -- silence, length, fillers ---------------------------------------------------------------
    def _agent_queued(self) -> bool:
        """Agent audio (not a filler sound, not music on hold) waits in the playout."""
        sounds = self.playout.queued_of(FILLER_ITEM) + self.playout.queued_of(MUSIC_ITEM)
        return self.playout.queued_samples > sounds

    def _caller_talking(self, now: float) -> bool:
        return self._caller_speaking or (
            self._caller_heard_at is not None and now - self._caller_heard_at < CALLER_TALKING_MS
        )

    def _check_limits(self, now: float, step: Step) -> None:
        busy = (
            self._held
            or self._opening_silent()
            or self.agent_speaking
            or self._caller_talking(now)
            or self._in_flight > 0
            or bool(self._waits)
            or self._transferring is not None
        )
        if busy:
            self.limits.busy(now)
        for due in self.limits.due(now):
            if isinstance(due, Ask):
                step.lines.append(self.book.event("silence_check"))
                step.note("silence_check", after_s=self.limits.silence_ms / 1000)
                self._say(due.instructions, step)
            elif isinstance(due, Finish):
                step.lines.append(self.book.event("limit_goodbye", reason=due.reason))
                step.note("limit_goodbye", reason=due.reason)
                self._say(due.goodbye, step)
                step.add(
                    self._wait_quiet(
                        HangUp(AGENT, due.reason), now, due.deadline - now, after_speech=True
                    )
                )
        if self._to_say and self._may_ask():
            step.requests.extend(CreateResponse(instructions=text) for text in self._to_say)
            self._to_say.clear()

    def _may_ask(self) -> bool:
        """A response may be asked for now: none is in progress or already asked for (a
        tool's output waiting for its answer), and the caller is not mid-turn (the server
        answers that itself)."""
        return (
            self._response is None
            and not self._caller_speaking
            and not self.tools.waiting_for_response
            and not self._agent_holding
        )

    def _say(self, instructions: str, step: Step) -> None:
        """Ask the model to say something now, or once the response in progress is done
        (a Realtime server takes one response at a time; GPT-Live takes instructions any
        time and answers on its own)."""
        if self._live or self._may_ask():
            step.requests.append(CreateResponse(instructions=instructions))
        else:
            self._to_say.append(instructions)

    def _check_filler(self, now: float, step: Step) -> None:
        quiet = (
            self._in_flight > 0
            and not self._held
            and not self.agent_speaking
            and not self._caller_talking(now)
            and not self._waits
            and self._transferring is None
            and not self.tools.waiting_for_response
        )
        kind = self.filler.due(now, quiet)
        if kind == SPOKEN:
            step.lines.append(self.book.event("tool_filler", filler=kind))
            step.note("tool_filler", filler=kind)
            self._say(HOLDING_LINE, step)
        elif kind == TONE:
            step.lines.append(self.book.event("tool_filler", filler=kind))
            step.note("tool_filler", filler=kind)
        if self.filler.playing and not self._held:
            self._top_up_filler()

    def _top_up_filler(self) -> None:
        """Keep one period of the thinking sound queued while it plays."""
        if len(self._filler_sound) // 2 != self.call_rate * 1400 // 1000:
            self._filler_sound = thinking_sound(self.call_rate)
        if self.playout.queued_of(FILLER_ITEM) < len(self._filler_sound) // 4:
            self.playout.push(FILLER_ITEM, self._filler_sound)

    def _stop_filler(self) -> Step:
        """A tool's result is ready: the thinking sound stops on the next frame."""
        step = Step()
        if self.filler.result(still_running=self._in_flight > 0):
            dropped = self.playout.drop(FILLER_ITEM)
            step.note("tool_filler_stopped", dropped_ms=dropped * 1000 // self.call_rate)
        return step

    def _hang_up(self, hang_up: HangUp) -> Step:
        self.outcome.decide(hang_up.ended_by, hang_up.reason)
        step = Step(actions=[hang_up])
        # Whoever waited for a hang-up has it now.
        for wait in [w for w in self._waits if isinstance(w.action, HangUp)]:
            self._waits.remove(wait)
        step.actions.append(HungUp())
        return step
