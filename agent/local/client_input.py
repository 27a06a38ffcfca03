"""Client events as the local server receives them: JSON parsing and the checks the real API
makes on required fields, conversation items and ``response.create`` parameters. Errors are
``ProtocolError``s for the client.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from agent.local.events import ProtocolError
from agent.local.session_state import SessionState, check_modalities
from agent.realtime.dialect import Dialect


def parse(message: str | bytes) -> dict[str, Any]:
    """One WebSocket frame as a client event object."""
    if not isinstance(message, str):
        raise ProtocolError(
            "Binary frames are not supported; send each event as a JSON text frame.",
            code="invalid_json",
        )
    try:
        event = json.loads(message)
    except ValueError as exc:
        raise ProtocolError(
            f"We could not parse the JSON body of your request. ({exc})", code="invalid_json"
        ) from exc
    if not isinstance(event, dict):
        raise ProtocolError("Each event must be a JSON object.", code="invalid_json")
    return event


def required(event: dict[str, Any], key: str, kind: type) -> Any:
    """``event[key]``, which must be present and of type ``kind``."""
    if key not in event or event[key] is None:
        raise ProtocolError(
            f"Missing required parameter: '{key}'.", code="missing_required_parameter", param=key
        )
    value = event[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProtocolError(
            f"Invalid type for '{key}': expected {kind.__name__}.", code="invalid_type", param=key
        )
    return value


_ITEM_ROLES = ("user", "assistant", "system")


def checked_item(raw: dict[str, Any]) -> dict[str, Any]:
    """A copy of a client item after checking the fields its type requires."""
    data: dict[str, Any] = json.loads(json.dumps(raw))
    kind = data.get("type")
    if kind == "message":
        if data.get("role") not in _ITEM_ROLES:
            raise ProtocolError(
                f"Invalid value: '{data.get('role')}'. Supported values are: 'user', "
                "'assistant', and 'system'.",
                code="invalid_value",
                param="item.role",
            )
        content = data.get("content")
        if not isinstance(content, list) or not all(
            isinstance(part, dict) and isinstance(part.get("type"), str) for part in content
        ):
            raise ProtocolError(
                "Invalid 'item.content': expected a list of content parts with a 'type'.",
                code="invalid_value",
                param="item.content",
            )
        for part in content:
            # Keep the history light: the audio bytes of a client item are not echoed back.
            if isinstance(part.get("audio"), str):
                part["audio"] = None
    elif kind == "function_call_output":
        for key in ("call_id", "output"):
            _item_string(data, key)
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            _item_string(data, key)
    else:
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: 'message', 'function_call', and "
            "'function_call_output'.",
            code="invalid_value",
            param="item.type",
        )
    if "id" in data and not isinstance(data["id"], str):
        raise ProtocolError("Invalid type for 'item.id': expected a string.", code="invalid_type")
    return data


def _item_string(data: dict[str, Any], key: str) -> None:
    if not isinstance(data.get(key), str):
        raise ProtocolError(
            f"Missing required parameter: 'item.{key}'.",
            code="missing_required_parameter",
            param=f"item.{key}",
        )


def item_text(data: dict[str, Any]) -> str | None:
    """The text of a message item's text parts, if it has any."""
    if data.get("type") != "message":
        return None
    texts = [
        part["text"]
        for part in data.get("content", [])
        if isinstance(part.get("text"), str) and part.get("type") in ("input_text", "text")
    ]
    return " ".join(texts) if texts else None


@dataclass(frozen=True)
class ResponseParams:
    """A checked ``response.create``'s ``response`` object, with the session's defaults."""

    modalities: list[str]
    instructions: str
    metadata: dict[str, str] | None

    @property
    def modality(self) -> str:
        """What the reply streams: "audio" (with its transcript) or "text"."""
        return "audio" if "audio" in self.modalities else "text"


def response_params(session: SessionState, raw: object) -> ResponseParams:
    """The parameters of a ``response.create`` (``raw`` is its ``response``, or None)."""
    params = raw or {}
    if not isinstance(params, dict):
        raise ProtocolError("'response' must be an object.", code="invalid_type", param="response")
    dialect = session.dialect
    modalities_key = "output_modalities" if dialect is Dialect.GA else "modalities"
    modalities = params.get(modalities_key, session.modalities)
    check_modalities(dialect, modalities, "response")
    instructions = params.get("instructions", session.instructions)
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
    return ResponseParams(list(modalities), instructions, metadata)
