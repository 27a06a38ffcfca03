"""The response lifecycle: at most one response at a time, from created to done.

A response asks the responder for a reply and waits (without blocking) until the reply is
planned; then it opens its assistant message and streams it: the transcript a word per audio
chunk, ahead of the audio as the real API's runs, the audio paced on the protocol's clock at
most ``lead_ms`` ahead of real time (a text response is sent whole). A completed response
then makes its planned function call, streamed like the API's (added, argument deltas,
done). A response ends completed, cancelled (by the client, by the caller's speech, by an
edit of its message) or failed (the responder raised), always with ``response.done``.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from agent.audio.codecs import Codec
from agent.local.client_input import ResponseParams, response_params
from agent.local.conversation import Conversation
from agent.local.events import Item, ProtocolError, ResponseInfo, new_id
from agent.local.outbox import Outbox
from agent.local.replies import ReplyPlan, ReplyRequest, ToolCall
from agent.local.reply_source import Pending, ReplySource
from agent.local.reply_stream import ReplyStream
from agent.local.responder import Responder
from agent.local.session_state import SessionState
from agent.local.usage import UsageCounter
from agent.realtime.dialect import Dialect, OutputEvent

ARGUMENTS_DELTA_CHARS = 24
"""Function call arguments are streamed in pieces of this size, like the API's token deltas."""

log = structlog.get_logger(__name__)


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
    instructions: str = ""

    def delta_fields(self) -> dict[str, Any]:
        """The ids every delta of the response's message carries."""
        assert self.item is not None
        return {
            "response_id": self.info.id,
            "item_id": self.item.id,
            "output_index": 0,
            "content_index": 0,
        }

    @property
    def played_until(self) -> float | None:
        """When the audio sent so far will have played out, on the protocol's clock."""
        return None if self.started_at is None else self.started_at + self.sent_ms / 1000


class Responses:
    """The active response of one connection, if any, and how it streams."""

    def __init__(
        self,
        session: SessionState,
        conversation: Conversation,
        out: Outbox,
        responder: Responder,
        *,
        chunk_ms: int,
        lead_ms: int,
        wake: Callable[[], None],
        on_done: Callable[[float | None], None],
    ) -> None:
        """``wake`` is called (from any thread) when a background reply has news; ``on_done``
        gets the ended response's ``played_until`` (for the idle timeout)."""
        self._session = session
        self._conversation = conversation
        self._out = out
        self._events = out.events
        self._responder = responder
        self._chunk_ms = chunk_ms
        self._lead_s = lead_ms / 1000
        self._wake = wake
        self._on_done = on_done
        self._conversation_id = new_id("conv")
        self._response: _Response | None = None
        self._usage = UsageCounter(out.events.dialect)

    @property
    def active(self) -> bool:
        return self._response is not None

    def start(
        self,
        raw_params: object,
        request_for: Callable[[ResponseParams], ReplyRequest],
        now: float,
    ) -> None:
        """Start a response with ``raw_params`` (a ``response.create``'s ``response``): ask
        the responder with ``request_for(params)`` and send ``response.created``; the reply
        then streams from ``poll``. Nothing starts on error."""
        if self._response is not None:
            raise ProtocolError(
                "Conversation already has an active response in progress: "
                f"{self._response.info.id}. Wait until the response is finished before "
                "creating a new one.",
                code="conversation_already_has_active_response",
            )
        params = response_params(self._session, raw_params)
        request = request_for(params)
        try:
            reply = self._responder.reply(request)
        except Exception as exc:
            # A pluggable backend (STT/TTS) can fail; the client hears about it, the
            # connection carries on.
            log.exception("local responder failed to start a reply")
            raise ProtocolError(
                f"The responder failed: {exc}", code="responder_failed", kind="server_error"
            ) from exc
        info = ResponseInfo(
            id=new_id("resp"),
            conversation_id=self._conversation_id,
            modalities=list(params.modalities),
            output_format=self._session.output_format,
            voice=self._session.voice,
            metadata=params.metadata,
        )
        self._out.send("response.created", response=self._events.response(info, "in_progress"))
        codec = self._session.output_codec
        response = _Response(
            info=info,
            source=ReplySource(reply, codec, self._chunk_ms, params.modality == "audio"),
            modality=params.modality,
            codec=codec,
            next_due=now,
            instructions=params.instructions,
        )
        self._response = response
        if isinstance(reply, ReplyStream):
            reply.set_waker(self._wake)
        self._try_open(response, now)

    def cancel(self, response_id: object) -> None:
        """The client's ``response.cancel`` (of the active response, or of ``response_id``)."""
        response = self._response
        if response is None or (response_id is not None and response_id != response.info.id):
            raise ProtocolError(
                "Cancellation failed: no active response found.",
                code="response_cancel_not_active",
            )
        self._finish(response, "cancelled", "client_cancelled")

    def interrupt(self) -> None:
        """The caller started speaking: the active response, if any, is cut short."""
        if self._response is not None:
            self._finish(self._response, "cancelled", "turn_detected")

    def stop_streaming(self, item: Item) -> None:
        """``item`` is about to be deleted or truncated: stop the response streaming it."""
        if self._response is not None and self._response.item is item:
            self._finish(self._response, "cancelled", "client_cancelled")

    def poll(self, now: float) -> None:
        """Open a response whose reply got planned, and send the audio due by ``now``."""
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

    @property
    def next_due(self) -> float | None:
        """When the next audio chunk is due; None while waiting on the producer or idle."""
        response = self._response
        if response is None or response.plan is None or response.starved:
            return None
        return response.next_due

    def close(self) -> None:
        """Stop the active response's producer (the connection ended)."""
        if self._response is not None:
            self._response.source.cancel()
            self._response = None

    # ---- the message -----------------------------------------------------------------------

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
        previous = self._conversation.add(item)
        response.item = item
        response.previous_item_id = previous
        response.words = _words(plan.text)
        response.info.output.append(item)
        ids = {"response_id": response.info.id, "output_index": 0}
        self._out.send("response.output_item.added", **ids, item=item.wire())
        self._out.put(*self._events.item_added(item, previous))
        item.data["content"] = [self._events.assistant_content(response.modality, "")]
        self._out.send(
            "response.content_part.added",
            **ids,
            item_id=item.id,
            content_index=0,
            part=self._events.content_part(response.modality, ""),
        )
        response.next_due = now
        if response.modality == "text":
            self._finish(response, "completed")

    def _send_word(self, response: _Response) -> None:
        word = response.words[response.next_word]
        response.next_word += 1
        response.sent_text.append(word)
        which = (
            OutputEvent.TRANSCRIPT_DELTA if response.modality == "audio" else OutputEvent.TEXT_DELTA
        )
        self._out.put(self._events.output(which, **response.delta_fields(), delta=word))

    def _send_chunk(self, response: _Response, chunk: bytes, now: float) -> None:
        assert response.item is not None
        if response.started_at is None:
            response.started_at = now
        # The transcript runs ahead of the audio, a word per chunk, as the real API's does.
        if response.next_word < len(response.words):
            self._send_word(response)
        self._out.put(
            self._events.output(
                OutputEvent.AUDIO_DELTA,
                **response.delta_fields(),
                delta=base64.b64encode(chunk).decode("ascii"),
            )
        )
        samples = len(chunk) // response.codec.sample_bytes
        response.sent_ms += samples * 1000 / response.codec.rate
        response.item.audio_ms = response.sent_ms
        response.next_due = response.started_at + response.sent_ms / 1000 - self._lead_s

    def _close_message(self, response: _Response, status: str) -> None:
        if status == "completed":
            while response.next_word < len(response.words):
                self._send_word(response)
        text = "".join(response.sent_text)
        fields = response.delta_fields()
        if response.modality == "audio":
            self._out.put(
                self._events.output(OutputEvent.AUDIO_DONE, **fields),
                self._events.output(OutputEvent.TRANSCRIPT_DONE, **fields, transcript=text),
            )
        else:
            self._out.put(self._events.output(OutputEvent.TEXT_DONE, **fields, text=text))
        self._out.send(
            "response.content_part.done",
            **fields,
            part=self._events.content_part(response.modality, text),
        )
        item = response.item
        assert item is not None
        item.streaming = False
        item.data["status"] = "completed" if status == "completed" else "incomplete"
        item.data["content"] = [self._events.assistant_content(response.modality, text)]
        if self._events.dialect is Dialect.GA:
            self._out.put(self._events.item_done(item, response.previous_item_id))
        self._out.send(
            "response.output_item.done",
            response_id=response.info.id,
            output_index=0,
            item=item.wire(),
        )

    # ---- the end ---------------------------------------------------------------------------

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
            _send_function_call(self._out, self._conversation, response.info, call)
        details: dict[str, Any] | None = None
        if reason is not None:
            details = {"type": status, "reason": reason}
        elif error is not None:
            details = {"type": status, "error": error}
        own = {item.id for item in response.info.output}
        usage = self._usage.response_usage(
            response.instructions,
            (item for item in self._conversation.items if item.id not in own),
            # The transcript, and any function call's arguments: generated text both.
            "".join(response.sent_text)
            + "".join(str(item.data.get("arguments") or "") for item in response.info.output),
            response.sent_ms,
        )
        body = self._events.response(response.info, status, details)
        body["usage"] = usage
        self._out.send("response.done", response=body)
        self._response = None
        self._on_done(response.played_until)


def _send_function_call(
    out: Outbox, conversation: Conversation, info: ResponseInfo, call: ToolCall
) -> None:
    """Stream a function call item the way the API does: added, argument deltas, done."""
    events = out.events
    output_index = len(info.output)
    item_id, call_id = new_id("item"), new_id("call")
    item = Item(events.function_call_item(item_id, call_id, call.name, "", "in_progress"))
    previous = conversation.add(item)
    info.output.append(item)
    ids = {"response_id": info.id, "output_index": output_index}
    out.send("response.output_item.added", **ids, item=item.wire())
    out.put(*events.item_added(item, previous))
    call_ids = {**ids, "item_id": item_id, "call_id": call_id}
    for start in range(0, len(call.arguments), ARGUMENTS_DELTA_CHARS):
        delta = call.arguments[start : start + ARGUMENTS_DELTA_CHARS]
        out.send("response.function_call_arguments.delta", **call_ids, delta=delta)
    # GA names the function in the done event; the beta event has no such field.
    ga = events.dialect is Dialect.GA
    named = {"name": call.name} if ga else {}
    out.send("response.function_call_arguments.done", **call_ids, **named, arguments=call.arguments)
    item.data.update(status="completed", arguments=call.arguments)
    if ga:
        out.put(events.item_done(item, previous))
    out.send("response.output_item.done", **ids, item=item.wire())


def _words(text: str) -> list[str]:
    """Transcript deltas: each word with the whitespace before it, so they join to ``text``."""
    return re.findall(r"\s*\S+", text)
