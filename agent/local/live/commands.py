"""Client events of a GPT-Live session as the local server receives them: each frame parsed and
its fields checked as strictly as the real server checks them. Errors are ``ProtocolError``s
for the client; what an event then does is the protocol's business.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.local.client_input import parse
from agent.local.events import ProtocolError

MAX_CONTENT_CHARS = 8000
"""Appended context is limited to 500 tokens by the real server; this bounds it in characters
(a token is rarely longer than a dozen), so a runaway client cannot grow the session."""

# The fields each supported client event takes besides ``type`` and ``event_id``.
_FIELDS: dict[str, frozenset[str]] = {
    "session.start": frozenset({"session"}),
    "session.update": frozenset({"session"}),
    "session.input_audio.append": frozenset({"audio"}),
    "session.input_audio.mute": frozenset(),
    "session.input_audio.unmute": frozenset(),
    "session.instructions.append": frozenset({"content", "delegation_id"}),
    "session.thinking.append": frozenset({"content", "delegation_id"}),
    "session.commentary.append": frozenset({"content", "delegation_id"}),
    "session.close": frozenset(),
}
_NEEDS_RESPONSES = "requires Responses delegation; this session delegates to the client."
# Live client events this server knows but cannot serve, with why.
_UNSUPPORTED: dict[str, str] = {
    "response.create": f"'response.create' {_NEEDS_RESPONSES}",
    "response.item.create": f"'response.item.create' {_NEEDS_RESPONSES}",
    "decision.create": "Decisions are not supported by the local server.",
    "decision.item.create": "Decisions are not supported by the local server.",
    "decision.item.delete": "Decisions are not supported by the local server.",
    "session.output_audio.fixture.play": "Audio fixtures are not supported by the local server.",
}
CONTEXT_EVENTS = (
    "session.instructions.append",
    "session.thinking.append",
    "session.commentary.append",
)


@dataclass(frozen=True)
class ContextAppend:
    """A checked ``session.{instructions,thinking,commentary}.append``."""

    kind: str
    """"instructions", "thinking" or "commentary"."""
    delegation_id: str | None
    content: str


def parse_frame(message: str | bytes) -> dict[str, Any]:
    """One WebSocket frame as a client event object (any ``type``)."""
    return parse(message)


def client_event_id(event: dict[str, Any]) -> str | None:
    """The client's ``event_id``, which acknowledgements and errors echo, if it is usable."""
    value = event.get("event_id")
    return value if isinstance(value, str) else None


def checked_type(event: dict[str, Any]) -> str:
    """The event's ``type`` once its fields passed the checks every Live client event gets."""
    kind = event.get("type")
    if kind is None:
        raise ProtocolError(
            "Missing required parameter: 'type'.", code="missing_required_parameter", param="type"
        )
    if not isinstance(kind, str):
        raise ProtocolError(
            "Invalid type for 'type': expected a string.", code="invalid_type", param="type"
        )
    if kind in _UNSUPPORTED:
        raise ProtocolError(_UNSUPPORTED[kind], code="unsupported_event", param="type")
    fields = _FIELDS.get(kind)
    if fields is None:
        supported = ", ".join(f"'{name}'" for name in _FIELDS)
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: {supported}.",
            code="invalid_value",
            param="type",
        )
    if "event_id" in event and not isinstance(event["event_id"], str):
        raise ProtocolError(
            "Invalid type for 'event_id': expected a string.", code="invalid_type", param="event_id"
        )
    for key in event:
        if key not in fields and key not in ("type", "event_id"):
            raise ProtocolError(f"Unknown parameter: '{key}'.", code="unknown_parameter", param=key)
    return kind


def required(event: dict[str, Any], key: str) -> object:
    """``event[key]``, which must be present (it may still be null)."""
    if key not in event:
        raise ProtocolError(
            f"Missing required parameter: '{key}'.", code="missing_required_parameter", param=key
        )
    return event[key]


def context_append(event: dict[str, Any]) -> ContextAppend:
    """A context append's fields: ``delegation_id`` is required but nullable (the SDK's
    TypedDict says so, though its model defaults it), ``content`` a plain string."""
    kind = str(event["type"]).split(".")[1]
    delegation_id = required(event, "delegation_id")
    if delegation_id is not None and not isinstance(delegation_id, str):
        raise ProtocolError(
            "Invalid type for 'delegation_id': expected a string or null.",
            code="invalid_type",
            param="delegation_id",
        )
    content = required(event, "content")
    if not isinstance(content, str):
        raise ProtocolError(
            "Invalid type for 'content': expected a string.", code="invalid_type", param="content"
        )
    if len(content) > MAX_CONTENT_CHARS:
        raise ProtocolError(
            f"Invalid 'content': string too long. Expected at most {MAX_CONTENT_CHARS} "
            f"characters, got {len(content)}.",
            code="string_above_max_length",
            param="content",
        )
    return ContextAppend(kind, delegation_id, content)
