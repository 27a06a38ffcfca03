"""The realtime protocol as a sans-I/O state machine: one instance per connection.

Contract
--------

A ``RealtimeProtocol`` is fed and asked; it never reads a socket, a clock or a thread.

- ``start()`` returns the events that open the connection (``session.created``). Call it
  once, first.
- ``receive(message, now)`` handles one client frame (a JSON text frame) and returns the
  server events to send, in order, followed by whatever became due by ``now``. Client mistakes
  (bad JSON, unknown events, invalid parameters) come back as one ``error`` event each and
  leave the state as it was; ``receive`` raises only on a bug of ours, which the transport
  answers with ``error_event``.
- ``poll(now)`` returns what became due by ``now`` without a client frame: transcripts that
  finished, a background reply's opening once it is planned, paced audio chunks, the end of a
  response whose audio ran out, the idle timeout.
- ``next_deadline()`` says when ``poll`` next has something to send, or None: then nothing
  happens until the next frame or until ``waker`` is called. Poll at or after the deadline;
  polling early or often is harmless.
- ``waker`` is called, from any thread, when background work finished (speech-to-text, a
  ``ReplyStream``'s plan or audio); the transport then calls ``poll``. Set it before
  ``start``; the default does nothing (a caller that polls on its own needs no wake-ups).
- ``ended`` says the protocol ended the session, so the transport closes the connection
  once everything was sent; a realtime session never does (the client hangs up).
- ``close()`` ends the connection: background work stops and pooled resources (a Silero
  model) go back. Call it once, last.

Time is whatever clock the caller passes in seconds, so tests drive it with a fake clock and
the transport with the event loop's; it must not go backwards. Audio positions
(``audio_start_ms``, ``audio_end_ms``) are measured on the appended audio's own timeline, as
the real API does, never on that clock.

Slow work (speech-to-text, text-to-speech) never runs here: a ``Transcriber`` returns futures
and a responder may answer with a ``ReplyStream``, both filled by worker threads.

Inside, each job has its part: the session settings (``session_state``), the input audio
buffer with its VAD timeline and idle timeout (``input_audio``), the conversation's items
(``conversation``), input transcription (``transcriptions``) and the response lifecycle
(``responses``), all writing into one ``Outbox`` so events leave in the order things
happened. This class routes client events to them and carries out what one part's event
means for another: speech starting interrupts a response, a turn ending is committed and
answered, a response ending arms the idle timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.local.client_input import ResponseParams, parse
from agent.local.conversation import Conversation
from agent.local.events import Event, EventBuilder, Item, ProtocolError
from agent.local.input_audio import InputAudioBuffer, Span
from agent.local.outbox import Outbox
from agent.local.replies import ReplyRequest
from agent.local.responder import Responder, Transcriber
from agent.local.responses import Responses
from agent.local.session_state import SessionState
from agent.local.synthetic_voice import SyntheticResponder
from agent.local.transcriptions import Transcriptions
from agent.local.vad import EnergyVad, VadEvent, VadFactory
from agent.realtime.dialect import Dialect

CHUNK_MS = 50
"""Duration of each audio delta."""
LEAD_MS = 200
"""How far audio may run ahead of real time (the real API also streams a little ahead)."""

# Known to the API but meaningless on this transport; answered with a specific error.
_UNSUPPORTED_EVENTS = ("output_audio_buffer.clear", "transcription_session.update")


class RealtimeProtocol:
    """One connection's realtime session: routes client events and joins its parts."""

    def __init__(
        self,
        dialect: Dialect,
        *,
        responder: Responder | None = None,
        model: str | None = None,
        vad_factory: VadFactory = EnergyVad,
        transcriber: Transcriber | None = None,
        chunk_ms: int = CHUNK_MS,
        lead_ms: int = LEAD_MS,
    ) -> None:
        self.dialect = dialect
        self.session = SessionState(dialect, model)
        self.waker: Callable[[], None] = _no_wake
        """Called from any thread when background work finished; the transport polls then."""
        self._out = Outbox(EventBuilder(dialect))
        self._input = InputAudioBuffer(
            self.session.input_codec, self.session.turn_detection, vad_factory, self._out
        )
        self._conversation = Conversation(self._out, before_cut=self._stop_streaming)
        self._transcriptions = Transcriptions(transcriber, self._out, self._wake)
        self._responses = Responses(
            self.session,
            self._conversation,
            self._out,
            responder or SyntheticResponder(),
            chunk_ms=chunk_ms,
            lead_ms=lead_ms,
            wake=self._wake,
            on_done=self._response_done,
        )
        self._now = 0.0
        """The time of the latest ``receive`` or ``poll``."""
        self._handlers: dict[str, Callable[[dict[str, Any]], None]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": lambda _: self._commit(self._input.commit_all()),
            "input_audio_buffer.clear": lambda _: self._input.clear(),
            "conversation.item.create": self._conversation.create,
            "conversation.item.truncate": self._conversation.truncate,
            "conversation.item.delete": self._conversation.delete,
            "conversation.item.retrieve": self._conversation.retrieve,
            "response.create": lambda event: self._start_response(event.get("response")),
            "response.cancel": lambda event: self._responses.cancel(event.get("response_id")),
        }

    # ---- the contract ----------------------------------------------------------------------

    def start(self) -> list[Event]:
        """The events that open a connection (``session.created``)."""
        self._out.send("session.created", session=self.session.wire())
        return self._out.drain()

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        """Handle one client frame; bad input becomes an ``error`` event, never an exception."""
        self._now = now
        client_event_id: str | None = None
        try:
            event = parse(message)
            raw_id = event.get("event_id")
            client_event_id = raw_id if isinstance(raw_id, str) else None
            self._dispatch(event)
        except ProtocolError as err:
            self._out.put(self._out.events.error(err, client_event_id))
        return self._out.drain() + self.poll(now)

    def poll(self, now: float) -> list[Event]:
        """Send what is due at ``now``: transcripts that finished, a planned response's
        opening, paced audio, the end of responses that ran out, an idle timeout."""
        self._now = now
        self._transcriptions.report_finished()
        self._responses.poll(now)
        self._check_idle()
        return self._out.drain()

    def next_deadline(self) -> float | None:
        """When ``poll`` next has something to send, or None until then (or until ``waker``
        is called)."""
        deadlines = (self._responses.next_due, self._input.idle_deadline)
        return min((deadline for deadline in deadlines if deadline is not None), default=None)

    @property
    def ended(self) -> bool:
        """Always False: a realtime session lasts until the client disconnects."""
        return False

    def close(self) -> None:
        """The connection ended: stop background work and give back pooled resources."""
        self._responses.close()
        self._transcriptions.cancel()
        self._input.close()

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event:
        """An ``error`` event for ``err`` in this connection's dialect (not queued)."""
        return self._out.events.error(err, client_event_id)

    # ---- read-only views -------------------------------------------------------------------

    @property
    def input_rate(self) -> int:
        """The sample rate of appended audio, as the session's input format implies."""
        return self._input.rate

    @property
    def items(self) -> list[Item]:
        """The conversation's items, oldest first."""
        return self._conversation.items

    def item(self, item_id: str) -> Item | None:
        return self._conversation.get(item_id)

    @property
    def response_active(self) -> bool:
        return self._responses.active

    # ---- client events ---------------------------------------------------------------------

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(
                "Missing required parameter: 'type'.",
                code="missing_required_parameter",
                param="type",
            )
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(event)
            return
        if kind in _UNSUPPORTED_EVENTS:
            raise ProtocolError(
                f"'{kind}' is not supported by the local realtime server over WebSocket.",
                code="unsupported_event",
                param="type",
            )
        supported = ", ".join(f"'{name}'" for name in self._handlers)
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: {supported}.",
            code="invalid_value",
            param="type",
        )

    def _on_session_update(self, event: dict[str, Any]) -> None:
        if "session" not in event:
            raise ProtocolError(
                "Missing required parameter: 'session'.",
                code="missing_required_parameter",
                param="session",
            )
        self.session.update(event["session"])
        self._input.configure(self.session.input_codec, self.session.turn_detection)
        self._out.send("session.updated", session=self.session.wire())

    def _on_append(self, event: dict[str, Any]) -> None:
        for boundary in self._input.append(event):
            self._on_speech_boundary(boundary)

    def _on_speech_boundary(self, boundary: VadEvent) -> None:
        turn = self.session.turn_detection
        if boundary.kind == "start":
            self._input.speech_started(boundary)
            if turn is not None and turn.interrupt_response:
                self._responses.interrupt()
            return
        self._commit(self._input.speech_stopped(boundary))
        if turn is not None and turn.create_response and not self._responses.active:
            self._start_response(None)

    # ---- what one part's news means for another --------------------------------------------

    def _commit(self, span: Span) -> None:
        """Make ``span`` of the input audio a user turn in the conversation."""
        rate = self._input.rate
        audio = self._input.take(span)
        item = Item(self._out.events.user_audio_item(span.item_id), audio=audio, audio_rate=rate)
        previous = self._conversation.add(item)
        self._out.send("input_audio_buffer.committed", previous_item_id=previous, item_id=item.id)
        self._out.put(*self._out.events.item_added(item, previous))
        if self.session.transcription_enabled:
            # Reported as it finishes, in parallel with any response (as the API does).
            self._transcriptions.report(item)

    def _start_response(self, raw_params: object, *, idle: bool = False) -> None:
        """Start a response (``raw_params`` is a ``response.create``'s ``response``)."""
        self._responses.start(
            raw_params, lambda params: self._reply_request(params, idle=idle), self._now
        )
        self._input.disarm_idle()

    def _reply_request(self, params: ResponseParams, *, idle: bool) -> ReplyRequest:
        """What the responder is told: the latest user turn (or function call output), the
        session's tools, why the response was made."""
        common: dict[str, Any] = {
            "tool_result": self._conversation.tool_result(),
            "tools": self.session.tools,
            "idle": idle,
            "audio": params.modality == "audio",
        }
        user = self._conversation.latest_user()
        if user is None:
            return ReplyRequest(params.instructions, None, b"", self._input.rate, **common)
        future = self._transcriptions.start(user)
        return ReplyRequest(
            params.instructions,
            user.text,
            user.audio,
            user.audio_rate or self._input.rate,
            user_transcript=(lambda: future.result()) if future is not None else None,
            **common,
        )

    def _stop_streaming(self, item: Item) -> None:
        self._responses.stop_streaming(item)

    def _response_done(self, played_until: float | None) -> None:
        """A response ended: the idle countdown starts once its audio has played."""
        now = self._now
        self._input.arm_idle(now, now if played_until is None else max(now, played_until))

    def _check_idle(self) -> None:
        if self._responses.active:
            return
        span = self._input.idle_timeout(self._now)
        if span is None:
            return
        # The silent stretch becomes a user turn, and the model prompts the caller to go on.
        self._commit(span)
        try:
            self._start_response(None, idle=True)
        except ProtocolError as err:
            self._out.put(self._out.events.error(err))

    def _wake(self) -> None:
        # Late-bound: the transport sets ``waker`` after construction.
        self.waker()


def _no_wake() -> None:
    """The default waker: a caller that polls on its own needs no wake-ups."""
