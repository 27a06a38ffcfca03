"""The realtime protocol as a sans-I/O state machine: one instance per connection.

Feed it client messages with ``receive`` and let time pass with ``poll``; both return the
server events to send, in order. ``next_deadline`` says when ``poll`` has work to do (the
next paced audio chunk). Time is whatever clock the caller passes in seconds, so tests drive
it with a fake clock and the transport with the event loop's.

Audio positions (``audio_start_ms``, ``audio_end_ms``) are measured on the appended audio's
own timeline, as the real API does, never on the wall clock.

Slow work (speech-to-text, text-to-speech) never runs here: a ``Transcriber`` returns futures
and a responder may answer with a ``ReplyStream``, both filled by worker threads. They call
``waker`` (from any thread) when something is ready; the transport then calls ``poll``.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.audio.codecs import Codec
from agent.audio.pcm import as_int16
from agent.local.client_input import checked_item, item_text, parse, required
from agent.local.events import Event, EventBuilder, Item, ProtocolError, ResponseInfo, new_id
from agent.local.replies import ReplyPlan, ReplyRequest, ToolCall, ToolResult
from agent.local.reply_source import Pending, ReplySource
from agent.local.reply_stream import ReplyStream
from agent.local.responder import Responder, Transcriber
from agent.local.session_state import SessionState, check_modalities
from agent.local.synthetic_voice import SyntheticResponder
from agent.local.vad import EnergyVad, VadEvent, VadFactory, VoiceActivityDetector
from agent.realtime.dialect import Dialect, OutputEvent

CHUNK_MS = 50
"""Duration of each audio delta."""
LEAD_MS = 200
"""How far audio may run ahead of real time (the real API also streams a little ahead)."""
MIN_COMMIT_MS = 100
"""A manual commit needs at least this much buffered audio, as with the real API."""
MAX_HISTORY = 64
"""Older conversation items are forgotten, keeping per-connection state bounded."""
ARGUMENTS_DELTA_CHARS = 24
"""Function call arguments are streamed in pieces of this size, like the API's token deltas."""

log = structlog.get_logger(__name__)

_CLIENT_EVENTS = (
    "session.update",
    "input_audio_buffer.append",
    "input_audio_buffer.commit",
    "input_audio_buffer.clear",
    "conversation.item.create",
    "conversation.item.truncate",
    "conversation.item.delete",
    "conversation.item.retrieve",
    "response.create",
    "response.cancel",
)
# Known to the API but meaningless on this transport; answered with a specific error.
_UNSUPPORTED_EVENTS = ("output_audio_buffer.clear", "transcription_session.update")


@dataclass
class _Response:
    """A response in flight: planning (``plan`` is None), then streaming its message."""

    info: ResponseInfo
    source: ReplySource
    modality: str
    codec: Codec
    next_due: float
    plan: ReplyPlan | None = None
    item: Item | None = None
    """The assistant message being streamed (None while planning or for a bare call)."""
    previous_item_id: str | None = None
    words: list[str] = field(default_factory=list)
    started_at: float | None = None
    """When the first audio chunk went out: pacing counts from there."""
    starved: bool = False
    """The producer had no audio ready at the last look; the stream wakes us."""
    next_word: int = 0
    sent_text: list[str] = field(default_factory=list)
    sent_ms: float = 0.0


@dataclass
class _IdleTimer:
    """The ``idle_timeout_ms`` countdown, armed when a response's audio finished playing."""

    deadline: float
    audio_start_ms: float


class RealtimeProtocol:
    """One connection's realtime session: state, VAD, history and the active response."""

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
        self.items: list[Item] = []
        self.input_rate = self.session.input_codec.rate
        self._events = EventBuilder(dialect)
        self._responder = responder or SyntheticResponder()
        self._vad_factory = vad_factory
        self._transcriber = transcriber
        self.waker: Callable[[], None] = _no_wake
        """Called from any thread when background work finished; the transport polls then."""
        self._chunk_ms = chunk_ms
        self._lead_s = lead_ms / 1000
        self._out: list[Event] = []
        self._conversation_id = new_id("conv")
        self._timeline_ms = 0.0
        self._buffer = bytearray()
        self._buffer_start_ms = 0.0
        self._vad: VoiceActivityDetector | None = None
        self._vad_base_ms = 0.0
        self._speech_item_id: str | None = None
        self._speech_start_ms = 0.0
        self._response: _Response | None = None
        self._transcribing: list[Item] = []
        self._idle: _IdleTimer | None = None
        self._now = 0.0
        """The time of the latest ``receive`` or ``poll``."""
        self._handlers: dict[str, Callable[[dict[str, Any], float], None]] = {
            "session.update": self._on_session_update,
            "input_audio_buffer.append": self._on_append,
            "input_audio_buffer.commit": self._on_commit,
            "input_audio_buffer.clear": self._on_clear,
            "conversation.item.create": self._on_item_create,
            "conversation.item.truncate": self._on_truncate,
            "conversation.item.delete": self._on_item_delete,
            "conversation.item.retrieve": self._on_item_retrieve,
            "response.create": self._on_response_create,
            "response.cancel": self._on_response_cancel,
        }
        self._reset_vad()

    # ---- driving the machine -------------------------------------------------------------

    def start(self) -> list[Event]:
        """The events that open a connection (``session.created``)."""
        self._send("session.created", session=self.session.wire())
        return self._drain()

    def receive(self, message: str | bytes, now: float) -> list[Event]:
        """Handle one client frame; bad input becomes an ``error`` event, never an exception."""
        self._now = now
        client_event_id: str | None = None
        try:
            event = parse(message)
            raw_id = event.get("event_id")
            client_event_id = raw_id if isinstance(raw_id, str) else None
            self._dispatch(event, now)
        except ProtocolError as err:
            self._out.append(self._events.error(err, client_event_id))
        return self._drain() + self.poll(now)

    def poll(self, now: float) -> list[Event]:
        """Send what is due at ``now``: transcripts that finished, a planned response's
        opening, paced audio, the end of responses that ran out, an idle timeout."""
        self._now = now
        self._report_transcriptions()
        response = self._response
        if response is not None and response.plan is None:
            self._try_open(response, now)
        while (
            response is not None
            and response is self._response
            and response.plan is not None
            and response.next_due <= now
        ):
            try:
                chunk = response.source.next_chunk()
            except Exception as exc:
                self._fail(response, exc)
                break
            if chunk is Pending.WAIT:
                response.starved = True
                break
            response.starved = False
            if chunk is Pending.END:
                self._finish(response, "completed")
                break
            self._send_chunk(response, chunk, now)
        self._check_idle(now)
        return self._drain()

    def next_deadline(self) -> float | None:
        """When ``poll`` next has something to send, or None until then (or until ``waker``
        is called)."""
        deadlines: list[float] = []
        response = self._response
        if response is not None and response.plan is not None and not response.starved:
            deadlines.append(response.next_due)
        if self._idle is not None:
            deadlines.append(self._idle.deadline)
        return min(deadlines, default=None)

    def close(self) -> None:
        """The connection ended: stop background work and give back pooled resources."""
        if self._response is not None:
            self._response.source.cancel()
            self._response = None
        for item in self._transcribing:
            if item.transcription is not None:
                item.transcription.cancel()
        self._transcribing.clear()
        self._close_vad()

    def error_event(self, err: ProtocolError, client_event_id: str | None = None) -> Event:
        """An ``error`` event for ``err`` in this connection's dialect (not queued)."""
        return self._events.error(err, client_event_id)

    @property
    def response_active(self) -> bool:
        return self._response is not None

    def item(self, item_id: str) -> Item | None:
        return next((item for item in self.items if item.id == item_id), None)

    # ---- plumbing ------------------------------------------------------------------------

    def _send(self, type_: str, **fields: Any) -> None:
        self._out.append(self._events.event(type_, **fields))

    def _drain(self) -> list[Event]:
        out, self._out = self._out, []
        return out

    def _dispatch(self, event: dict[str, Any], now: float) -> None:
        kind = event.get("type")
        if not isinstance(kind, str):
            raise ProtocolError(
                "Missing required parameter: 'type'.",
                code="missing_required_parameter",
                param="type",
            )
        handler = self._handlers.get(kind)
        if handler is not None:
            handler(event, now)
            return
        if kind in _UNSUPPORTED_EVENTS:
            raise ProtocolError(
                f"'{kind}' is not supported by the local realtime server over WebSocket.",
                code="unsupported_event",
                param="type",
            )
        supported = ", ".join(f"'{name}'" for name in _CLIENT_EVENTS)
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: {supported}.",
            code="invalid_value",
            param="type",
        )

    def _add_item(
        self, item: Item, after: str | None = None, *, at_start: bool = False
    ) -> str | None:
        """Insert ``item`` (at the end unless told otherwise); returns the previous item id."""
        if at_start:
            index = 0
        elif after is not None:
            index = next(i for i, existing in enumerate(self.items) if existing.id == after) + 1
        else:
            index = len(self.items)
        previous = self.items[index - 1].id if index > 0 else None
        self.items.insert(index, item)
        while len(self.items) > MAX_HISTORY:
            oldest = next((i for i, old in enumerate(self.items) if not old.streaming), None)
            if oldest is None:
                break
            del self.items[oldest]
        return previous

    # ---- session -------------------------------------------------------------------------

    def _on_session_update(self, event: dict[str, Any], now: float) -> None:
        if "session" not in event:
            raise ProtocolError(
                "Missing required parameter: 'session'.",
                code="missing_required_parameter",
                param="session",
            )
        before = (self.session.input_codec, self.session.turn_detection)
        self.session.update(event["session"])
        if before[0] != self.session.input_codec:
            # A buffer mixing two sample rates means nothing; start afresh at the new rate.
            self.input_rate = self.session.input_codec.rate
            self._buffer.clear()
            self._buffer_start_ms = self._timeline_ms
        if before != (self.session.input_codec, self.session.turn_detection):
            self._reset_vad()
        self._send("session.updated", session=self.session.wire())

    # ---- input audio ---------------------------------------------------------------------

    def _reset_vad(self) -> None:
        self._close_vad()
        turn = self.session.turn_detection
        self._vad = None if turn is None else self._vad_factory(self.input_rate, turn.vad)
        self._vad_base_ms = self._timeline_ms
        self._speech_item_id = None
        if turn is None or turn.idle_timeout_ms is None:
            self._idle = None

    def _close_vad(self) -> None:
        if self._vad is not None:
            self._vad.close()
            self._vad = None

    def _on_append(self, event: dict[str, Any], now: float) -> None:
        audio = required(event, "audio", str)
        try:
            raw = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ProtocolError(
                "Invalid 'audio'. Expected base64-encoded audio bytes.",
                code="invalid_value",
                param="audio",
            ) from exc
        codec = self.session.input_codec
        if len(raw) % codec.sample_bytes:
            raise ProtocolError(
                f"{codec.name} audio must be whole {codec.sample_bytes}-byte samples, "
                f"got {len(raw)} bytes",
                code="invalid_value",
                param="audio",
            )
        pcm = codec.decode(raw)
        samples = as_int16(pcm)
        self._buffer += pcm
        self._timeline_ms += len(samples) * 1000 / self.input_rate
        if self._vad is not None:
            for boundary in self._vad.process(samples):
                self._on_vad(boundary, now)

    def _on_vad(self, boundary: VadEvent, now: float) -> None:
        turn = self.session.turn_detection
        at_ms = self._vad_base_ms + boundary.sample * 1000 / self.input_rate
        if boundary.kind == "start":
            self._speech_item_id = new_id("item")
            self._speech_start_ms = max(at_ms, self._buffer_start_ms)
            self._send(
                "input_audio_buffer.speech_started",
                audio_start_ms=round(self._speech_start_ms),
                item_id=self._speech_item_id,
            )
            self._idle = None
            if turn is not None and turn.interrupt_response and self._response is not None:
                self._finish(self._response, "cancelled", "turn_detected")
            return
        item_id = self._speech_item_id or new_id("item")
        self._speech_item_id = None
        self._send("input_audio_buffer.speech_stopped", audio_end_ms=round(at_ms), item_id=item_id)
        self._commit(item_id, self._speech_start_ms, at_ms)
        if turn is not None and turn.create_response and self._response is None:
            self._start_response({}, now)

    def _offset(self, ms: float) -> int:
        samples = round((ms - self._buffer_start_ms) * self.input_rate / 1000)
        return min(max(samples * 2, 0), len(self._buffer))

    def _commit(self, item_id: str, start_ms: float, end_ms: float) -> None:
        begin, end = self._offset(start_ms), self._offset(end_ms)
        audio = bytes(self._buffer[begin:end])
        del self._buffer[:end]
        self._buffer_start_ms += end / 2 * 1000 / self.input_rate
        item = Item(self._events.user_audio_item(item_id), audio=audio, audio_rate=self.input_rate)
        previous = self._add_item(item)
        self._send("input_audio_buffer.committed", previous_item_id=previous, item_id=item_id)
        self._out.extend(self._events.item_added(item, previous))
        if self.session.transcription_enabled and self._transcribe(item) is not None:
            # Reported as it finishes, in parallel with any response (as the API does).
            self._transcribing.append(item)

    # ---- input transcription -------------------------------------------------------------

    def _transcribe(self, item: Item) -> Future[str] | None:
        """Start (once) the speech-to-text of a user audio item."""
        if item.transcription is None and self._transcriber is not None and item.audio:
            item.transcription = self._transcriber.submit(item.audio, item.audio_rate)
            item.transcription.add_done_callback(lambda _: self.waker())
        return item.transcription

    def _report_transcriptions(self) -> None:
        for item in list(self._transcribing):
            future = item.transcription
            if future is None or not future.done():
                continue
            self._transcribing.remove(item)
            ids = {"item_id": item.id, "content_index": 0}
            error = None if future.cancelled() else future.exception()
            if future.cancelled() or error is not None:
                self._send(
                    "conversation.item.input_audio_transcription.failed",
                    **ids,
                    error={
                        "type": "transcription_error",
                        "code": "transcription_failed",
                        "message": str(error or "cancelled"),
                        "param": None,
                    },
                )
                continue
            text = future.result()
            item.data["content"][0]["transcript"] = text
            seconds = len(item.audio) / 2 / (item.audio_rate or self.input_rate)
            self._send("conversation.item.input_audio_transcription.delta", **ids, delta=text)
            self._send(
                "conversation.item.input_audio_transcription.completed",
                **ids,
                transcript=text,
                usage={"type": "duration", "seconds": round(seconds, 3)},
            )

    def _on_commit(self, event: dict[str, Any], now: float) -> None:
        buffered_ms = len(self._buffer) / 2 * 1000 / self.input_rate
        if buffered_ms < MIN_COMMIT_MS:
            raise ProtocolError(
                "Error committing input audio buffer: buffer too small. Expected at least "
                f"{MIN_COMMIT_MS}ms of audio, but buffer only has {buffered_ms:.2f}ms of audio.",
                code="input_audio_buffer_commit_empty",
            )
        item_id = self._speech_item_id or new_id("item")
        self._commit(item_id, self._buffer_start_ms, self._timeline_ms)
        self._reset_vad()

    def _on_clear(self, event: dict[str, Any], now: float) -> None:
        self._buffer.clear()
        self._buffer_start_ms = self._timeline_ms
        self._reset_vad()
        self._send("input_audio_buffer.cleared")

    # ---- conversation items --------------------------------------------------------------

    def _on_item_create(self, event: dict[str, Any], now: float) -> None:
        raw = required(event, "item", dict)
        previous_id = event.get("previous_item_id")
        if previous_id is not None and previous_id != "root" and self.item(previous_id) is None:
            raise ProtocolError(
                f"Previous item with id '{previous_id}' not found.",
                code="item_create_invalid_previous_item_id",
                param="previous_item_id",
            )
        data = checked_item(raw)
        item_id = data.get("id") or new_id("item")
        if self.item(item_id) is not None:
            raise ProtocolError(
                f"Item with id '{item_id}' already exists.",
                code="item_create_duplicate_item_id",
                param="item.id",
            )
        data.update(id=item_id, object="realtime.item", status="completed")
        item = Item(data, text=item_text(data))
        previous = self._add_item(
            item,
            after=previous_id if previous_id not in (None, "root") else None,
            at_start=previous_id == "root",
        )
        self._out.extend(self._events.item_added(item, previous))

    def _find(self, event: dict[str, Any], code: str) -> Item:
        item_id = required(event, "item_id", str)
        found = self.item(item_id)
        if found is None:
            raise ProtocolError(
                f"Item with item_id '{item_id}' not found.", code=code, param="item_id"
            )
        return found

    def _on_item_delete(self, event: dict[str, Any], now: float) -> None:
        item = self._find(event, "item_delete_invalid_item_id")
        if self._response is not None and self._response.item is item:
            self._finish(self._response, "cancelled", "client_cancelled")
        self.items.remove(item)
        self._send("conversation.item.deleted", item_id=item.id)

    def _on_item_retrieve(self, event: dict[str, Any], now: float) -> None:
        item = self._find(event, "item_retrieve_invalid_item_id")
        self._send("conversation.item.retrieved", item=item.wire())

    def _on_truncate(self, event: dict[str, Any], now: float) -> None:
        item = self._find(event, "item_truncate_invalid_item_id")
        content_index = required(event, "content_index", int)
        audio_end_ms = required(event, "audio_end_ms", int)
        content = item.data.get("content") or []
        audio_types = ("output_audio", "audio")
        if item.data.get("role") != "assistant" or not any(
            part.get("type") in audio_types for part in content
        ):
            raise ProtocolError(
                "Only model output audio messages can be truncated.",
                code="unsupported_content_type",
                param="item_id",
            )
        if content_index != 0:
            raise ProtocolError(
                f"Invalid value: {content_index}. The item has one content part (index 0).",
                code="invalid_value",
                param="content_index",
            )
        if audio_end_ms < 0 or audio_end_ms > item.audio_ms:
            raise ProtocolError(
                f"Audio content of {int(item.audio_ms)}ms is already shorter than "
                f"{audio_end_ms}ms.",
                code="invalid_value",
                param="audio_end_ms",
            )
        if self._response is not None and self._response.item is item:
            self._finish(self._response, "cancelled", "client_cancelled")
        item.audio_ms = float(audio_end_ms)
        # As the real API does, drop the transcript: the caller may not have heard any of it
        # past the cut, and text the user never heard must not steer the conversation.
        for part in item.data["content"]:
            if part.get("type") in audio_types:
                part["transcript"] = ""
        self._send(
            "conversation.item.truncated",
            item_id=item.id,
            content_index=content_index,
            audio_end_ms=audio_end_ms,
        )

    # ---- responses -----------------------------------------------------------------------

    def _on_response_create(self, event: dict[str, Any], now: float) -> None:
        params = event.get("response") or {}
        if not isinstance(params, dict):
            raise ProtocolError(
                "'response' must be an object.", code="invalid_type", param="response"
            )
        self._start_response(params, now)

    def _on_response_cancel(self, event: dict[str, Any], now: float) -> None:
        response = self._response
        wanted = event.get("response_id")
        if response is None or (wanted is not None and wanted != response.info.id):
            raise ProtocolError(
                "Cancellation failed: no active response found.",
                code="response_cancel_not_active",
            )
        self._finish(response, "cancelled", "client_cancelled")

    def _start_response(self, params: dict[str, Any], now: float, *, idle: bool = False) -> None:
        if self._response is not None:
            raise ProtocolError(
                "Conversation already has an active response in progress: "
                f"{self._response.info.id}. Wait until the response is finished before "
                "creating a new one.",
                code="conversation_already_has_active_response",
            )
        modalities_key = "output_modalities" if self.dialect is Dialect.GA else "modalities"
        modalities = params.get(modalities_key, self.session.modalities)
        check_modalities(self.dialect, modalities, "response")
        instructions = params.get("instructions", self.session.instructions)
        if not isinstance(instructions, str):
            raise ProtocolError(
                "Invalid type for 'response.instructions': expected a string.",
                code="invalid_type",
                param="response.instructions",
            )
        metadata = params.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
        ):
            raise ProtocolError(
                "Invalid type for 'response.metadata': expected an object of strings.",
                code="invalid_type",
                param="response.metadata",
            )
        modality = "audio" if "audio" in modalities else "text"
        request = self._reply_request(instructions, idle=idle, audio=modality == "audio")
        try:
            reply = self._responder.reply(request)
        except Exception as exc:
            # A pluggable backend (STT/TTS) can fail; the client hears about it, the
            # connection carries on.
            log.exception("local responder failed to start a reply")
            raise ProtocolError(
                f"The responder failed: {exc}", code="responder_failed", kind="server_error"
            ) from exc
        self._idle = None
        info = ResponseInfo(
            id=new_id("resp"),
            conversation_id=self._conversation_id,
            modalities=list(modalities),
            output_format=self.session.output_format,
            voice=self.session.voice,
            metadata=metadata,
        )
        self._send("response.created", response=self._events.response(info, "in_progress"))
        output_codec = self.session.output_codec
        response = _Response(
            info=info,
            source=ReplySource(reply, output_codec, self._chunk_ms, modality == "audio"),
            modality=modality,
            codec=output_codec,
            next_due=now,
        )
        self._response = response
        if isinstance(reply, ReplyStream):
            reply.set_waker(self.waker)
        self._try_open(response, now)

    def _try_open(self, response: _Response, now: float) -> None:
        """Once the responder has decided what to say, open the response's message item.

        A reply that is only a function call has no message: the call goes out at once.
        """
        try:
            plan = response.source.plan()
        except Exception as exc:
            self._fail(response, exc)
            return
        if plan is None:
            return
        response.plan = plan
        if not plan.text and plan.tool_call is not None:
            self._finish(response, "completed")
            return
        item = Item(self._events.assistant_item(new_id("item")), streaming=True)
        previous = self._add_item(item)
        response.item = item
        response.previous_item_id = previous
        response.words = _words(plan.text)
        response.info.output.append(item)
        ids = {"response_id": response.info.id, "output_index": 0}
        self._send("response.output_item.added", **ids, item=item.wire())
        self._out.extend(self._events.item_added(item, previous))
        item.data["content"] = [self._events.assistant_content(response.modality, "")]
        self._send(
            "response.content_part.added",
            **ids,
            item_id=item.id,
            content_index=0,
            part=self._events.content_part(response.modality, ""),
        )
        response.next_due = now
        if response.modality == "text":
            self._finish(response, "completed")

    def _reply_request(self, instructions: str, *, idle: bool, audio: bool) -> ReplyRequest:
        turn = next(
            (
                item
                for item in reversed(self.items)
                if item.data.get("role") == "user"
                or item.data.get("type") == "function_call_output"
            ),
            None,
        )
        tool_result = None
        if turn is not None and turn.data.get("type") == "function_call_output":
            tool_result = self._tool_result(turn)
        user = next(
            (item for item in reversed(self.items) if item.data.get("role") == "user"), None
        )
        common: dict[str, Any] = {
            "tool_result": tool_result,
            "tools": self.session.tools,
            "idle": idle,
            "audio": audio,
        }
        if user is None:
            return ReplyRequest(instructions, None, b"", self.input_rate, **common)
        future = self._transcribe(user)
        return ReplyRequest(
            instructions,
            user.text,
            user.audio,
            user.audio_rate or self.input_rate,
            user_transcript=(lambda: future.result()) if future is not None else None,
            **common,
        )

    def _tool_result(self, output: Item) -> ToolResult:
        call_id = output.data.get("call_id")
        call = next(
            (
                item
                for item in self.items
                if item.data.get("type") == "function_call" and item.data.get("call_id") == call_id
            ),
            None,
        )
        data = call.data if call is not None else {}
        return ToolResult(
            name=str(data.get("name", "")),
            arguments=str(data.get("arguments", "{}")),
            output=str(output.data.get("output", "")),
        )

    def _delta_fields(self, response: _Response) -> dict[str, Any]:
        assert response.item is not None
        return {
            "response_id": response.info.id,
            "item_id": response.item.id,
            "output_index": 0,
            "content_index": 0,
        }

    def _send_word(self, response: _Response) -> None:
        word = response.words[response.next_word]
        response.next_word += 1
        response.sent_text.append(word)
        which = (
            OutputEvent.TRANSCRIPT_DELTA if response.modality == "audio" else OutputEvent.TEXT_DELTA
        )
        self._out.append(self._events.output(which, **self._delta_fields(response), delta=word))

    def _send_chunk(self, response: _Response, chunk: bytes, now: float) -> None:
        assert response.item is not None
        if response.started_at is None:
            response.started_at = now
        # The transcript runs ahead of the audio, a word per chunk, as the real API's does.
        if response.next_word < len(response.words):
            self._send_word(response)
        self._out.append(
            self._events.output(
                OutputEvent.AUDIO_DELTA,
                **self._delta_fields(response),
                delta=base64.b64encode(chunk).decode("ascii"),
            )
        )
        samples = len(chunk) // response.codec.sample_bytes
        response.sent_ms += samples * 1000 / response.codec.rate
        response.item.audio_ms = response.sent_ms
        response.next_due = response.started_at + response.sent_ms / 1000 - self._lead_s

    def _fail(self, response: _Response, exc: BaseException) -> None:
        log.error("local responder failed", error=str(exc), error_type=type(exc).__name__)
        error = {"type": "server_error", "code": "responder_failed", "message": str(exc)}
        self._finish(response, "failed", error=error)

    def _finish(
        self,
        response: _Response,
        status: str,
        reason: str | None = None,
        *,
        error: dict[str, str] | None = None,
    ) -> None:
        """Close the response's message and the response itself (completed, cancelled or
        failed); a completed response then makes its planned function call, if any."""
        response.source.cancel()
        if response.item is not None:
            self._close_message(response, status)
        call = response.plan.tool_call if response.plan is not None else None
        if status == "completed" and call is not None:
            self._call_function(response, call)
        details: dict[str, Any] | None = None
        if reason is not None:
            details = {"type": status, "reason": reason}
        elif error is not None:
            details = {"type": status, "error": error}
        self._send("response.done", response=self._events.response(response.info, status, details))
        self._response = None
        self._arm_idle(response)

    def _close_message(self, response: _Response, status: str) -> None:
        if status == "completed":
            while response.next_word < len(response.words):
                self._send_word(response)
        text = "".join(response.sent_text)
        fields = self._delta_fields(response)
        if response.modality == "audio":
            self._out.append(self._events.output(OutputEvent.AUDIO_DONE, **fields))
            self._out.append(
                self._events.output(OutputEvent.TRANSCRIPT_DONE, **fields, transcript=text)
            )
        else:
            self._out.append(self._events.output(OutputEvent.TEXT_DONE, **fields, text=text))
        self._send(
            "response.content_part.done",
            **fields,
            part=self._events.content_part(response.modality, text),
        )
        item = response.item
        assert item is not None
        item.streaming = False
        item.data["status"] = "completed" if status == "completed" else "incomplete"
        item.data["content"] = [self._events.assistant_content(response.modality, text)]
        if self.dialect is Dialect.GA:
            self._out.append(self._events.item_done(item, response.previous_item_id))
        self._send(
            "response.output_item.done",
            response_id=response.info.id,
            output_index=0,
            item=item.wire(),
        )

    def _call_function(self, response: _Response, call: ToolCall) -> None:
        """Stream a function call item the way the API does: added, argument deltas, done."""
        output_index = len(response.info.output)
        item_id, call_id = new_id("item"), new_id("call")
        item = Item(self._events.function_call_item(item_id, call_id, call.name, "", "in_progress"))
        previous = self._add_item(item)
        response.info.output.append(item)
        ids = {"response_id": response.info.id, "output_index": output_index}
        self._send("response.output_item.added", **ids, item=item.wire())
        self._out.extend(self._events.item_added(item, previous))
        call_ids = {**ids, "item_id": item_id, "call_id": call_id}
        for start in range(0, len(call.arguments), ARGUMENTS_DELTA_CHARS):
            delta = call.arguments[start : start + ARGUMENTS_DELTA_CHARS]
            self._send("response.function_call_arguments.delta", **call_ids, delta=delta)
        # GA names the function in the done event; the beta event has no such field.
        named = {"name": call.name} if self.dialect is Dialect.GA else {}
        self._send(
            "response.function_call_arguments.done",
            **call_ids,
            **named,
            arguments=call.arguments,
        )
        item.data.update(status="completed", arguments=call.arguments)
        if self.dialect is Dialect.GA:
            self._out.append(self._events.item_done(item, previous))
        self._send("response.output_item.done", **ids, item=item.wire())

    # ---- idle timeout --------------------------------------------------------------------

    def _arm_idle(self, response: _Response) -> None:
        """Start the idle countdown from when the response's audio will have been played."""
        turn = self.session.turn_detection
        if turn is None or turn.idle_timeout_ms is None:
            return
        now = self._now
        played_until = now
        if response.started_at is not None:
            played_until = max(now, response.started_at + response.sent_ms / 1000)
        self._idle = _IdleTimer(
            deadline=played_until + turn.idle_timeout_ms / 1000,
            audio_start_ms=self._timeline_ms + (played_until - now) * 1000,
        )

    def _check_idle(self, now: float) -> None:
        idle = self._idle
        if idle is None or now < idle.deadline or self._response is not None:
            return
        if self._vad is not None and self._vad.speaking:
            return
        self._idle = None
        item_id = new_id("item")
        end_ms = self._timeline_ms
        start_ms = min(idle.audio_start_ms, end_ms)
        self._send(
            "input_audio_buffer.timeout_triggered",
            audio_start_ms=round(start_ms),
            audio_end_ms=round(end_ms),
            item_id=item_id,
        )
        # The silent stretch becomes a user turn, and the model prompts the caller to go on.
        self._commit(item_id, start_ms, end_ms)
        try:
            self._start_response({}, now, idle=True)
        except ProtocolError as err:
            self._out.append(self._events.error(err))


def _no_wake() -> None:
    """The default waker: a caller that polls on its own needs no wake-ups."""


def _words(text: str) -> list[str]:
    """Transcript deltas: each word with the whitespace before it, so they join to ``text``."""
    return re.findall(r"\s*\S+", text)
