"""The Realtime protocol adapter: wire JSON to the bridge's typed events, and its requests
back to wire JSON, in either dialect (GA and beta are two instances of this one adapter).

Each server message is parsed once, here: JSON, the event's type (through the dialect's
names), its fields, base64 audio. A message that is no event (not JSON, no type) or an event
no decision needs gives no event; an event missing what it must carry raises
:class:`MalformedEvent`, which the shell logs once per type and skips.

Each ``response.done`` carries what that response cost (``response.usage``: tokens in and
out, text, audio and cached); the adapter, one per session, keeps their sum and reports it
after each as :class:`UsageUpdated`, a snapshot of the session so far as GPT-Live's
``session.usage.updated`` is, with the nested details flattened (``input_audio_tokens``,
``input_cached_text_tokens``, ``output_audio_tokens``, ...).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any

from agent.bridge.adapter import MalformedEvent
from agent.bridge.events import (
    AgentItemStarted,
    AudioDelta,
    AudioDone,
    CallerTranscript,
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
    SessionReady,
    SpeechStarted,
    SpeechStopped,
    TrackAudio,
    TranscriptDelta,
    TranscriptDone,
    UsageUpdated,
)
from agent.bridge.requests import (
    AppendAudio,
    CancelResponse,
    ClientRequest,
    ConfigureSession,
    CreateItem,
    CreateResponse,
    FunctionOutput,
    McpApproval,
    Message,
    SetAudioFormat,
    Truncate,
    Turn,
)
from agent.realtime.dialect import (
    Dialect,
    OutputEvent,
    format_update_body,
    session_body,
    wire_name,
)

#: The metadata key our response requests carry, echoed in ``response.created``.
REQUEST_TAG = "voice_agent_request"

__all__ = ["REQUEST_TAG", "MalformedEvent", "RealtimeAdapter"]


def _text(event: dict[str, Any], key: str) -> str:
    value = event.get(key)
    if not isinstance(value, str):
        raise MalformedEvent(str(event.get("type")), f"{key!r} is missing or not a string")
    return value


def _optional_text(event: dict[str, Any], key: str) -> str:
    value = event.get(key, "")
    return value if isinstance(value, str) else ""


def _table(event: dict[str, Any], key: str) -> dict[str, Any]:
    value = event.get(key)
    if not isinstance(value, dict):
        raise MalformedEvent(str(event.get("type")), f"{key!r} is missing or not an object")
    return value


def _audio(event: dict[str, Any]) -> AudioDelta:
    try:
        audio = base64.b64decode(_text(event, "delta"), validate=True)
    except (binascii.Error, ValueError):
        raise MalformedEvent(str(event["type"]), "the audio is not valid base64") from None
    return AudioDelta(_optional_text(event, "response_id"), _text(event, "item_id"), audio)


def _expires_at(event: dict[str, Any]) -> float | None:
    session = event.get("session")
    value = session.get("expires_at") if isinstance(session, dict) else None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _response_created(event: dict[str, Any]) -> ResponseCreated:
    response = _table(event, "response")
    metadata = response.get("metadata")
    tag = metadata.get(REQUEST_TAG) if isinstance(metadata, dict) else None
    return ResponseCreated(str(response.get("id", "")), tag if isinstance(tag, str) else None)


def _item_added(event: dict[str, Any]) -> list[ServerEvent]:
    item = _table(event, "item")
    added: list[ServerEvent] = [ItemAdded(str(item.get("id", "")))]
    if item.get("type") == "mcp_approval_request":
        added.append(
            McpApprovalRequested(
                str(item.get("id", "")), str(item.get("server_label", "")), str(item.get("name"))
            )
        )
    return added


def _output_item(event: dict[str, Any]) -> FunctionCallStarted | AgentItemStarted | None:
    item = _table(event, "item")
    if not item.get("id"):
        return None
    if item.get("type") == "message" and item.get("role") == "assistant":
        return AgentItemStarted(_optional_text(event, "response_id"), str(item["id"]))
    if item.get("type") != "function_call":
        return None
    return FunctionCallStarted(str(item["id"]), str(item.get("name", "")))


def _output_item_done(event: dict[str, Any]) -> McpCallDone | None:
    item = _table(event, "item")
    if item.get("type") != "mcp_call":
        return None
    error = item.get("error")
    problem = None
    if error:
        problem = str(error.get("message", error)) if isinstance(error, dict) else str(error)
    return McpCallDone(str(item.get("server_label", "")), str(item.get("name", "")), problem)


def _function_done(event: dict[str, Any]) -> FunctionCallDone:
    return FunctionCallDone(
        call_id=_optional_text(event, "call_id"),
        name=_optional_text(event, "name"),
        arguments=_optional_text(event, "arguments"),
        item_id=_optional_text(event, "item_id"),
        response_id=_optional_text(event, "response_id"),
    )


def _truncated(event: dict[str, Any]) -> ItemTruncated:
    end = event.get("audio_end_ms")
    if not isinstance(end, int) or isinstance(end, bool):
        raise MalformedEvent(str(event["type"]), "'audio_end_ms' is not an integer")
    return ItemTruncated(_text(event, "item_id"), end)


def _error(event: dict[str, Any]) -> ServerError:
    error = event.get("error") if isinstance(event.get("error"), dict) else {}
    assert isinstance(error, dict)

    def field(key: str) -> str | None:
        value = error.get(key)
        return str(value) if value is not None else None

    return ServerError(field("code"), field("message"), field("event_id"))


def _optional_int(event: dict[str, Any], key: str) -> int | None:
    value = event.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


_Parser = Callable[[dict[str, Any]], ServerEvent | list[ServerEvent] | None]

#: Events named alike in both dialects.
_COMMON: dict[str, _Parser] = {
    "session.updated": lambda e: SessionReady(_expires_at(e)),
    "input_audio_buffer.speech_started": lambda _e: SpeechStarted(),
    "input_audio_buffer.speech_stopped": lambda e: SpeechStopped(_optional_int(e, "audio_end_ms")),
    "response.created": _response_created,
    "response.done": lambda e: ResponseDone(str(_table(e, "response").get("id", ""))),
    # GA acknowledges our items with .added, beta with .created; take either from both.
    "conversation.item.added": _item_added,
    "conversation.item.created": _item_added,
    "conversation.item.truncated": _truncated,
    "conversation.item.input_audio_transcription.completed": lambda e: CallerTranscript(
        _text(e, "item_id"), _text(e, "transcript")
    ),
    "response.output_item.added": _output_item,
    "response.output_item.done": _output_item_done,
    "response.function_call_arguments.done": _function_done,
    "error": _error,
    # WebRTC only: the server's playout of the media track (none of these come on WebSocket).
    "output_audio_buffer.started": lambda e: PlayoutStarted(_optional_text(e, "response_id")),
    "output_audio_buffer.stopped": lambda e: PlayoutStopped(_optional_text(e, "response_id")),
    "output_audio_buffer.cleared": lambda e: PlayoutCleared(_optional_text(e, "response_id")),
}

#: Events whose wire names differ between the dialects.
_OUTPUT: dict[OutputEvent, _Parser] = {
    OutputEvent.AUDIO_DELTA: _audio,
    OutputEvent.AUDIO_DONE: lambda e: AudioDone(_text(e, "item_id")),
    OutputEvent.TRANSCRIPT_DELTA: lambda e: TranscriptDelta(
        _text(e, "item_id"), _optional_text(e, "delta")
    ),
    OutputEvent.TRANSCRIPT_DONE: lambda e: TranscriptDone(
        _text(e, "item_id"), e["transcript"] if isinstance(e.get("transcript"), str) else None
    ),
}


def response_usage(usage: dict[str, Any]) -> dict[str, float]:
    """A ``response.usage`` as flat counts: ``input_tokens``, ``input_audio_tokens``,
    ``input_cached_tokens``, ``input_cached_audio_tokens``, ``output_text_tokens``, ...;
    what is missing or not a number is left out."""
    flat: dict[str, float] = {}

    def take(table: dict[str, Any], prefix: str) -> None:
        for key, value in table.items():
            if isinstance(value, dict):
                # input_token_details -> input_..., cached_tokens_details -> cached_...
                name = key.removesuffix("_details").removesuffix("_token").removesuffix("_tokens")
                take(value, f"{prefix}{name}_")
            elif isinstance(value, int | float) and not isinstance(value, bool):
                flat[prefix + key] = float(value)

    take(usage, "")
    return flat


class RealtimeAdapter:
    """The Realtime protocol in one dialect; ``webrtc`` when the session runs over WebRTC
    (its audio then rides the media track, and a cancel also clears the server's playout)."""

    def __init__(self, dialect: Dialect, webrtc: bool = False) -> None:
        self.dialect = dialect
        self.webrtc = webrtc
        self._parsers: dict[str, _Parser] = dict(_COMMON)
        for internal, parser in _OUTPUT.items():
            self._parsers[wire_name(dialect, internal)] = parser
        #: The session's usage so far: the sum of its responses' ``response.usage``.
        self._usage: dict[str, float] = {}

    def parse(self, message: str | bytes) -> list[ServerEvent]:
        """The events in one server message; none for one that matters to no decision."""
        try:
            event = json.loads(message)
        except (ValueError, TypeError):
            return []
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return []
        parser = self._parsers.get(event["type"])
        if parser is None:
            return []
        try:
            parsed = parser(event)
        except MalformedEvent:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedEvent(event["type"], repr(exc)) from None
        if parsed is None:
            return []
        events = parsed if isinstance(parsed, list) else [parsed]
        if event["type"] == "response.done":
            usage = (event.get("response") or {}).get("usage")
            if isinstance(usage, dict) and usage:
                for key, value in response_usage(usage).items():
                    self._usage[key] = self._usage.get(key, 0.0) + value
                events.append(UsageUpdated(dict(self._usage)))
        return events

    def creation(self, requests: list[ClientRequest]) -> None:
        """Nothing: a Realtime session is configured by ``session.update`` on the wire, over
        WebRTC too (the calls endpoint's ``session`` part names only the model)."""
        return None

    def track_audio(self, audio: bytes) -> list[ServerEvent]:
        """Track audio as is: the playout events say whose it is (``agent.bridge.track``)."""
        return [TrackAudio(audio)]

    def encode(self, request: ClientRequest) -> list[str]:
        """The wire texts of ``request``."""
        if isinstance(request, AppendAudio):
            # Built by hand: this runs every 20 ms per call, and json.dumps of a dict is slower.
            payload = base64.b64encode(request.audio).decode("ascii")
            return ['{"type":"input_audio_buffer.append","audio":"' + payload + '"}']
        return [json.dumps(event, separators=(",", ":")) for event in self.wire(request)]

    def wire(self, request: ClientRequest) -> list[dict[str, Any]]:
        """The wire events of ``request`` as dicts (what ``encode`` serialises)."""
        if isinstance(request, ConfigureSession):
            update = {"type": "session.update", "session": session_body(self.dialect, request.spec)}
            # A replacement session starts from the conversation so far (one item per line).
            history = [
                self._history_item(index, turn) for index, turn in enumerate(request.spec.history)
            ]
            return [update, *history]
        if isinstance(request, SetAudioFormat):
            body = format_update_body(self.dialect, request.codec)
            return [{"type": "session.update", "session": body}]
        if isinstance(request, AppendAudio):
            audio = base64.b64encode(request.audio).decode("ascii")
            return [{"type": "input_audio_buffer.append", "audio": audio}]
        if isinstance(request, Truncate):
            return [
                {
                    "type": "conversation.item.truncate",
                    "item_id": request.item_id,
                    "content_index": 0,
                    "audio_end_ms": request.audio_end_ms,
                }
            ]
        if isinstance(request, CancelResponse):
            if self.webrtc:
                # The server plays out what it generated ahead: the cancel stops generating,
                # the clear drops what it has not sent yet (the order the API asks for).
                return [{"type": "response.cancel"}, {"type": "output_audio_buffer.clear"}]
            return [{"type": "response.cancel"}]
        if isinstance(request, CreateResponse):
            response: dict[str, Any] = {}
            if request.instructions is not None:
                response["instructions"] = request.instructions
            if request.tag is not None:
                response["metadata"] = {REQUEST_TAG: request.tag}
            return [{"type": "response.create", "response": response}]
        if isinstance(request, CreateItem):
            if isinstance(request.item, McpApproval) and self.dialect is not Dialect.GA:
                return []  # the beta dialect has no server-side MCP tools
            return [{"type": "conversation.item.create", "item": _item(request.item)}]
        # GPT-Live's delegation results and graceful close have no Realtime equivalent: the
        # socket's close ends a Realtime session.
        return []

    def _history_item(self, index: int, turn: Turn) -> dict[str, Any]:
        if turn.role == "user":
            return {
                "type": "conversation.item.create",
                "item": _item(Message(f"history_{index:04d}", "user", turn.text)),
            }
        kind = "output_text" if self.dialect is Dialect.GA else "text"
        return {
            "type": "conversation.item.create",
            "item": {
                "id": f"history_{index:04d}",
                "type": "message",
                "role": "assistant",
                "content": [{"type": kind, "text": turn.text}],
            },
        }


def _item(item: FunctionOutput | Message | McpApproval) -> dict[str, Any]:
    if isinstance(item, FunctionOutput):
        return {
            "id": item.item_id,
            "type": "function_call_output",
            "call_id": item.call_id,
            "output": item.output,
        }
    if isinstance(item, McpApproval):
        approval: dict[str, Any] = {
            "id": item.item_id,
            "type": "mcp_approval_response",
            "approval_request_id": item.approval_request_id,
            "approve": item.approve,
        }
        if item.reason:
            approval["reason"] = item.reason
        return approval
    return {
        "id": item.item_id,
        "type": "message",
        "role": item.role,
        "content": [{"type": "input_text", "text": item.text}],
    }
