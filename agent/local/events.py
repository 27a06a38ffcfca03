"""Server event dicts for the local realtime server, in either dialect.

Only the shapes live here; when to send what is the protocol's business. The few output
events whose names differ between dialects are named through ``agent.realtime.dialect``.
"""

from __future__ import annotations

import copy
import secrets
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from agent.realtime.dialect import Dialect, OutputEvent, wire_name

Event = dict[str, Any]


def new_id(prefix: str) -> str:
    """An id shaped like the real API's (``event_…``, ``item_…``, ``resp_…``)."""
    return f"{prefix}_{secrets.token_hex(10)}"


class ProtocolError(Exception):
    """A client mistake, reported to the client as an ``error`` event."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        kind: str = "invalid_request_error",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.param = param
        self.kind = kind


@dataclass
class Item:
    """A conversation item: its wire form plus what the server keeps beside it.

    ``data`` is the dialect's wire dict; ``audio`` is a user turn's PCM16 (at ``audio_rate``)
    for the responder; ``audio_ms`` is how much assistant audio the item holds;
    ``transcription`` is the speech-to-text of a user audio turn once it was started.
    """

    data: dict[str, Any]
    audio: bytes = b""
    audio_rate: int = 0
    audio_ms: float = 0.0
    text: str | None = None
    streaming: bool = False
    transcription: Future[str] | None = None

    @property
    def id(self) -> str:
        return str(self.data["id"])

    def wire(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)


@dataclass
class ResponseInfo:
    """The parts of a response object that do not change while it runs."""

    id: str
    conversation_id: str
    modalities: list[str]
    output_format: dict[str, Any] | str
    voice: str
    metadata: dict[str, str] | None = None
    output: list[Item] = field(default_factory=list)


class EventBuilder:
    """Builds server events for one dialect, each with a fresh ``event_id``."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect

    def event(self, type_: str, **fields: Any) -> Event:
        return {"type": type_, "event_id": new_id("event"), **fields}

    def output(self, which: OutputEvent, **fields: Any) -> Event:
        return self.event(wire_name(self.dialect, which), **fields)

    def error(self, err: ProtocolError, client_event_id: str | None = None) -> Event:
        body: dict[str, Any] = {
            "type": err.kind,
            "code": err.code,
            "message": err.message,
            "param": err.param,
            "event_id": client_event_id,
        }
        return self.event("error", error=body)

    def item_added(self, item: Item, previous_item_id: str | None) -> list[Event]:
        """What the API sends when an item joins the conversation.

        GA sends ``conversation.item.added`` (and ``.done`` once the item is complete); beta
        sends a single ``conversation.item.created``.
        """
        if self.dialect is Dialect.BETA:
            return [
                self.event(
                    "conversation.item.created",
                    previous_item_id=previous_item_id,
                    item=item.wire(),
                )
            ]
        events = [
            self.event(
                "conversation.item.added", previous_item_id=previous_item_id, item=item.wire()
            )
        ]
        if item.data.get("status") != "in_progress":
            events.append(self.item_done(item, previous_item_id))
        return events

    def item_done(self, item: Item, previous_item_id: str | None) -> Event:
        return self.event(
            "conversation.item.done", previous_item_id=previous_item_id, item=item.wire()
        )

    def user_audio_item(self, item_id: str) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "completed",
            "role": "user",
            "content": [{"type": "input_audio", "transcript": None}],
        }

    def assistant_item(self, item_id: str) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        }

    def function_call_item(
        self, item_id: str, call_id: str, name: str, arguments: str, status: str
    ) -> dict[str, Any]:
        return {
            "id": item_id,
            "object": "realtime.item",
            "type": "function_call",
            "status": status,
            "name": name,
            "call_id": call_id,
            "arguments": arguments,
        }

    def assistant_content(self, modality: str, text: str) -> dict[str, Any]:
        """The item content for an assistant reply (``output_audio``/``audio`` and so on)."""
        ga = self.dialect is Dialect.GA
        if modality == "audio":
            return {"type": "output_audio" if ga else "audio", "transcript": text}
        return {"type": "output_text" if ga else "text", "text": text}

    def content_part(self, modality: str, text: str) -> dict[str, Any]:
        if modality == "audio":
            return {"type": "audio", "transcript": text}
        return {"type": "text", "text": text}

    def response(
        self,
        info: ResponseInfo,
        status: str,
        status_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "object": "realtime.response",
            "id": info.id,
            "status": status,
            "status_details": status_details,
            "output": [item.wire() for item in info.output],
            "conversation_id": info.conversation_id,
            "max_output_tokens": "inf",
            "metadata": info.metadata,
            "usage": None,
        }
        if self.dialect is Dialect.GA:
            body["output_modalities"] = list(info.modalities)
            body["audio"] = {"output": {"format": info.output_format, "voice": info.voice}}
        else:
            body["modalities"] = list(info.modalities)
            body["output_audio_format"] = info.output_format
            body["voice"] = info.voice
            body["temperature"] = 0.8
        return body
