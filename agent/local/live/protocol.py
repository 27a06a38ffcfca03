"""GPT-Live's primary WebSocket as a sans-I/O state machine: one instance per connection.

Contract
--------

A ``LiveProtocol`` is fed and asked; it never reads a socket or a thread, and reads the wall
clock only for ``expires_at`` (Unix seconds the client reads; the expiry itself runs on the
caller's clock).

- ``start()`` returns the events that open the connection: none, since Live sends nothing
  until the client's ``session.start``. Call it once, first.
- ``receive(message, now)`` handles one client frame (a JSON text frame) and returns the
  server events to send, in order, followed by whatever became due by ``now``. Client
  mistakes (bad JSON, unknown events or fields, events before ``session.start``) come back
  as one ``error`` event each and leave the state as it was; ``receive`` raises only on a
  bug of ours, which the transport answers with ``error_event``.
- ``poll(now)`` returns what became due by ``now`` without a client frame: caller transcript
  deltas whose speech-to-text finished, a reply's audio and transcript (paced), a
  delegation once its reply is planned, usage updates, the expiry's ``session.closed``.
- ``next_deadline()`` says when ``poll`` next has something to send, or None: then nothing
  happens until the next frame or until ``waker`` is called. Poll at or after the deadline;
  polling early or often is harmless.
- ``waker`` is called, from any thread, when background work finished (speech-to-text, a
  ``ReplyStream``'s plan or audio); the transport then calls ``poll``. Set it before
  ``start``; the default does nothing.
- ``ended`` turns True with ``session.closed`` (``session.close``, or the session's maximum
  duration reached). The transport sends what it has and closes the connection normally;
  the protocol answers nothing more.
- ``close()`` ends the connection: background work stops and pooled resources (a Silero
  model) go back. Call it once, last.

Time is whatever clock the caller passes in seconds; it must not go backwards. The session
timeline (``start_ms``, ``end_ms``, ``offset_ms``) counts ms from ``session.start`` on that
clock, except the caller's transcript, whose positions are on the appended audio's own
timeline (as the realtime protocol's are); the two agree for a client streaming in real time.

What a session does: the caller's audio runs through the VAD continuously; speech starting
while the agent speaks stops the agent at once (barge-in); the caller's words are
transcribed as they speak; a turn's end is answered by the responder, whose reply is spoken
paced at most ``lead_ms`` ahead of real time. The voice has no tools: when the reply calls
one, the task is handed to the client as a delegation (``session.delegation.created``) the
moment the reply is planned, and the reply's own words are its spoken acknowledgement,
which starts ``acknowledgement_delay_ms`` later unless the client's commentary or thinking
came first (it cancels a pending acknowledgement, as on the real server). The client
answers with ``session.commentary.append`` (spoken as it is) or ``session.thinking.append``
(kept silently). Inside, each job has its part: the
configuration (``session_config``), the caller's audio and turns (``caller_input``), their
transcript (``caller_transcript``) and the agent's voice (``speaker``), all writing into one
``LiveOutbox``; this class routes client events to them and joins them up.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from agent.audio.codecs import Codec
from agent.local.events import Event, ProtocolError, new_id
from agent.local.live.caller_input import CallerInput, SpeechStarted, Turn
from agent.local.live.caller_transcript import CallerTranscript
from agent.local.live.commands import (
    CONTEXT_EVENTS,
    ContextAppend,
    checked_type,
    client_event_id,
    context_append,
    parse_frame,
    required,
)
from agent.local.live.events import LiveOutbox, error_event, timeline_ms
from agent.local.live.session_config import (
    HistoryMessage,
    LiveSessionConfig,
    start_config,
    update_config,
)
from agent.local.live.speaker import Speaker
from agent.local.replies import ReplyPlan, ReplyRequest, ToolCall
from agent.local.responder import Responder, Transcriber
from agent.local.synthetic_voice import SyntheticResponder
from agent.local.vad import EnergyVad, VadFactory

CHUNK_MS = 40
"""Duration of each output audio delta."""
LEAD_MS = 200
"""How far output audio may run ahead of real time."""
TRANSCRIPT_INTERVAL_MS = 400
"""The caller's words are transcribed this often (ms of their speech) while they speak."""
USAGE_INTERVAL_S = 10
MAX_SESSION_S = 3600
"""A session closes with reason ``expired`` this long after it started."""
MAX_DELEGATIONS = 256
"""Delegation ids remembered for ``delegation_id`` checks; the oldest are forgotten."""
MAX_CONTEXT = 64
"""Appended context entries kept (the brain does not read them; tests do)."""


class LiveProtocol:
    """One connection's GPT-Live session: routes client events and joins its parts."""

    def __init__(
        self,
        *,
        responder: Responder | None = None,
        vad_factory: VadFactory = EnergyVad,
        transcriber: Transcriber | None = None,
        tools: Mapping[str, Mapping[str, Any]] | None = None,
        chunk_ms: int = CHUNK_MS,
        lead_ms: int = LEAD_MS,
        transcript_interval_ms: int = TRANSCRIPT_INTERVAL_MS,
        usage_interval_s: float = USAGE_INTERVAL_S,
        max_session_s: float = MAX_SESSION_S,
        unix_time: Callable[[], float] = time.time,
    ) -> None:
        """``tools`` are the functions the responder may call (name -> argument schema): the
        voice offers them all, and hands any call to the client as a delegation."""
        self.waker: Callable[[], None] = _no_wake
        """Called from any thread when background work finished; the transport polls then."""
        self._responder = responder or SyntheticResponder()
        self._vad_factory = vad_factory
        self._tools = dict(tools or {})
        self._chunk_ms = chunk_ms
        self._lead_ms = lead_ms
        self._usage_interval_s = usage_interval_s
        self._max_session_s = max_session_s
        self._unix_time = unix_time
        self._out = LiveOutbox()
        self._transcript = CallerTranscript(
            transcriber, self._out, self._wake, transcript_interval_ms
        )
        self._config: LiveSessionConfig | None = None
        self._input: CallerInput | None = None
        self._speaker: Speaker | None = None
        self._started_at = 0.0
        self._next_usage = 0.0
        self._ended = False
        self._spoken = False
        """Whether the agent was asked to say anything yet (the first instructions greet)."""
        self._delegations: OrderedDict[str, ToolCall] = OrderedDict()
        self._context: list[ContextAppend] = []
        self._now = 0.0
        self._handlers: dict[str, Callable[[dict[str, Any], str | None], None]] = {
            "session.update": self._on_update,
            "session.input_audio.append": self._on_append,
            "session.input_audio.mute": lambda _, cid: self._set_muted(True, cid),
            "session.input_audio.unmute": lambda _, cid: self._set_muted(False, cid),
            "session.close": lambda _, cid: self._end("close_requested", cid),
            **{kind: self._on_context for kind in CONTEXT_EVENTS},
        }

    # ---- the contract ----------------------------------------------------------------------

    def start(self) -> list[Event]:
        """Nothing: a Live server speaks only once the client sent ``session.start``."""
        return []

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        """Handle one client frame; bad input becomes an ``error`` event, never an exception."""
        if self._ended:
            return []
        self._now = now
        cid: str | None = None
        try:
            event = parse_frame(message)
            cid = client_event_id(event)
            self._dispatch(checked_type(event), event, cid)
        except ProtocolError as err:
            self._out.put(error_event(err, cid))
        return self._out.drain() + self.poll(now)

    def poll(self, now: float) -> list[Event]:
        """Send what is due at ``now``: transcripts that finished, paced audio and its words,
        delegations, usage, the expiry."""
        self._now = now
        if self._speaker is not None and self._input is not None and not self._ended:
            self._transcript.report()
            self._speaker.poll(now, floor_free=not self._input.speaking)
            if now >= self._started_at + self._max_session_s:
                self._end("expired")
            elif now >= self._next_usage:
                self._out.send("session.usage.updated", usage=self._usage())
                # A stalled caller gets one update, not one per missed interval.
                missed = (now - self._next_usage) // self._usage_interval_s + 1
                self._next_usage += missed * self._usage_interval_s
        return self._out.drain()

    def next_deadline(self) -> float | None:
        """When ``poll`` next has something to send, or None until the next frame or wake-up."""
        if self._speaker is None or self._ended:
            return None
        deadlines = (
            self._speaker.next_due,
            self._next_usage,
            self._started_at + self._max_session_s,
        )
        return min(deadline for deadline in deadlines if deadline is not None)

    @property
    def ended(self) -> bool:
        """True once ``session.closed`` was sent: the transport closes the connection."""
        return self._ended

    def close(self) -> None:
        """The connection ended: stop background work and give back pooled resources."""
        if self._speaker is not None:
            self._speaker.close()
        self._transcript.cancel()
        if self._input is not None:
            self._input.close()

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event:
        """An ``error`` event for ``err`` (not queued)."""
        return error_event(err, client_event_id)

    # ---- read-only views -------------------------------------------------------------------

    @property
    def config(self) -> LiveSessionConfig | None:
        """The session's configuration once started."""
        return self._config

    @property
    def input_codec(self) -> Codec | None:
        """The format of appended audio, once the session started."""
        return self._config.codec if self._config is not None else None

    @property
    def input_rate(self) -> int:
        """The sample rate of appended audio (the default format's before the start)."""
        return self._config.codec.rate if self._config is not None else 24000

    @property
    def history(self) -> tuple[HistoryMessage, ...]:
        """The startup history (``session.input``) the client sent."""
        return self._config.history if self._config is not None else ()

    @property
    def context(self) -> list[ContextAppend]:
        """Instructions, thinking and commentary the client appended, oldest first."""
        return list(self._context)

    @property
    def delegations(self) -> dict[str, ToolCall]:
        """The delegations made, by id, with the function call behind each."""
        return dict(self._delegations)

    @property
    def muted(self) -> bool:
        return self._input is not None and self._input.muted

    @property
    def caller_speaking(self) -> bool:
        """True while the VAD hears the caller's turn (the agent then holds back)."""
        return self._input is not None and self._input.speaking

    # ---- client events ---------------------------------------------------------------------

    def _dispatch(self, kind: str, event: dict[str, Any], cid: str | None) -> None:
        if kind == "session.start":
            self._on_start(event, cid)
            return
        if self._config is None:
            raise ProtocolError(
                f"'{kind}' before the session started: send 'session.start' first and wait "
                "for 'session.started'.",
                code="session_not_started",
                param="type",
            )
        self._handlers[kind](event, cid)

    def start_media(self, session: object, now: float) -> list[Event]:
        """Start a WebRTC session from the ``session`` of the HTTP request that creates it:
        ``session.started`` (returned, for the data channel) and the clock from ``now``.
        Raises ``ProtocolError`` for a configuration the real server would refuse; a later
        ``session.start`` on the channel is refused as on a started WebSocket."""
        self._now = now
        self._begin(start_config(session, **self._identity(), media=True), None)
        return self._out.drain()

    def _identity(self) -> dict[str, Any]:
        return {
            "session_id": new_id("sess"),
            "expires_at": int(self._unix_time() + self._max_session_s),
        }

    def _on_start(self, event: dict[str, Any], cid: str | None) -> None:
        if self._config is not None:
            raise ProtocolError(
                "The session has already started; 'session.start' may be sent only once.",
                code="session_already_started",
                param="type",
            )
        self._begin(start_config(required(event, "session"), **self._identity()), cid)

    def _begin(self, config: LiveSessionConfig, cid: str | None) -> None:
        self._config = config
        self._started_at = self._now
        self._next_usage = self._now + self._usage_interval_s
        self._input = CallerInput(config.codec, self._vad_factory)
        self._speaker = Speaker(
            self._responder,
            config.codec,
            self._out,
            origin=self._now,
            chunk_ms=self._chunk_ms,
            lead_ms=self._lead_ms,
            wake=self._wake,
            on_tool_call=self._delegate,
        )
        self._out.send("session.started", client_event_id=cid, session=config.resource())

    def _on_update(self, event: dict[str, Any], cid: str | None) -> None:
        assert self._config is not None
        self._config = update_config(self._config, required(event, "session"))
        self._out.send("session.updated", client_event_id=cid, session=self._config.resource())

    def _on_append(self, event: dict[str, Any], _cid: str | None) -> None:
        assert self._input is not None and self._speaker is not None
        caller = self._input
        for boundary in caller.append(required(event, "audio")):
            if isinstance(boundary, SpeechStarted):
                # Server-owned barge-in: the caller has the floor, the agent stops at once.
                self._speaker.interrupt()
                self._transcript.speech_started(boundary.start_ms)
            else:
                self._answer_turn(boundary)
        if caller.speaking:
            self._transcript.progress(caller.turn_ms, caller.turn_audio, caller.rate)

    def _set_muted(self, muted: bool, cid: str | None) -> None:
        assert self._input is not None
        self._input.muted = muted
        kind = "session.input_audio.muted" if muted else "session.input_audio.unmuted"
        self._out.send(kind, client_event_id=cid)

    def _on_context(self, event: dict[str, Any], cid: str | None) -> None:
        assert self._speaker is not None
        append = context_append(event)
        if append.delegation_id is not None and append.delegation_id not in self._delegations:
            raise ProtocolError(
                f"Unknown delegation_id '{append.delegation_id}': it must be null or the id of "
                "a client delegation of this session.",
                code="delegation_not_found",
                param="delegation_id",
            )
        self._context.append(append)
        del self._context[:-MAX_CONTEXT]
        if append.kind in ("commentary", "thinking"):
            # The client spoke up about the work: a pending acknowledgement is moot.
            self._speaker.cancel_acknowledgement()
        at = timeline_ms(self._now - self._started_at)
        self._out.send(
            f"session.{append.kind}.appended", client_event_id=cid, start_ms=at, end_ms=at
        )
        if append.kind == "commentary":
            self._say(say=append.content)
        elif append.kind == "instructions" and not self._spoken:
            # Before the agent said anything, instructions start the conversation: it greets.
            self._say(instructions=append.content)
        elif append.kind == "instructions":
            # Later ones steer it: the brain answers them as it would the caller.
            self._say(user_text=append.content)

    # ---- what one part's news means for another --------------------------------------------

    def _answer_turn(self, turn: Turn) -> None:
        """The caller's turn ended: answer it, from its audio and (once done) its words."""
        transcript = self._transcript.turn_ended(turn)
        self._say(
            user_audio=turn.audio,
            user_transcript=(lambda: transcript.result()) if transcript is not None else None,
        )

    def _say(
        self,
        *,
        instructions: str | None = None,
        user_text: str | None = None,
        user_audio: bytes = b"",
        user_transcript: Callable[[], str] | None = None,
        say: str | None = None,
    ) -> None:
        """Queue an utterance asked of the responder."""
        assert self._config is not None and self._speaker is not None
        self._spoken = True
        self._speaker.say(
            ReplyRequest(
                instructions if instructions is not None else self._config.instructions,
                user_text,
                user_audio,
                self._config.codec.rate,
                user_transcript=user_transcript,
                tools=self._tools,
                say=say,
            )
        )

    def _delegate(self, plan: ReplyPlan, now: float) -> float:
        """A reply calls a function: it becomes the client's task now, placed on the timeline
        where it was decided; the reply's words wait the acknowledgement delay (seconds)."""
        assert plan.tool_call is not None and self._config is not None
        delegation_id = new_id("item")
        self._delegations[delegation_id] = plan.tool_call
        while len(self._delegations) > MAX_DELEGATIONS:
            self._delegations.popitem(last=False)
        self._out.send(
            "session.delegation.created",
            offset_ms=timeline_ms(now - self._started_at),
            delegation={"id": delegation_id, "type": "delegation", "target": "client"},
        )
        return int(self._config.delegation["acknowledgement_delay_ms"]) / 1000

    def _end(self, reason: str, cid: str | None = None) -> None:
        assert self._config is not None and self._speaker is not None
        self._speaker.interrupt()
        self._out.send(
            "session.closed",
            client_event_id=cid,
            reason=reason,
            usage=self._usage(),
            session=self._config.resource(),
        )
        self._ended = True

    def _usage(self) -> dict[str, int]:
        return {"seconds": int(max(self._now - self._started_at, 0.0))}

    def _wake(self) -> None:
        # Late-bound: the transport sets ``waker`` after construction.
        self.waker()


def _no_wake() -> None:
    """The default waker: a caller that polls on its own needs no wake-ups."""
