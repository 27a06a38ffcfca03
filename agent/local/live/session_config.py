"""A GPT-Live session's configuration: ``session.start`` checked as strictly as the real server
checks it, resolved with the server's defaults, echoed as a ``SessionResource``, and changed
by ``session.update`` only where Live allows it (delegation settings and triggers).

The real server rejects unknown fields, and so does this one: a misspelt field is a client
bug that the SDK's models do not catch (they keep extra fields), so it must fail here.

A WebRTC session (``media=True``) is configured by the HTTP request that creates it, with the
same object: only a primary WebSocket names an audio format (WebRTC negotiates its media), so
one is refused there; the session then works in 24 kHz PCM inside, and echoes no format.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

from agent.audio.codecs import Codec, codec
from agent.local.events import ProtocolError

DEFAULT_VOICE = "marin"
DEFAULT_INSTRUCTIONS = "You are the local test agent. Keep replies short."
"""The instructions of a session that gives none (or blank ones)."""
MAX_HISTORY_MESSAGES = 128
"""Startup history is limited to this many messages, as with the real server."""

DEFAULT_FORMAT: dict[str, Any] = {"type": "audio/pcm", "rate": 24000}
# The primary WebSocket's formats, by (type, rate), and the session codec each one is.
_CODEC_OF_FORMAT = {
    ("audio/pcm", 24000): "pcm16",
    ("audio/pcm", 16000): "pcm16-16k",
    ("audio/pcmu", 8000): "pcmu",
    ("audio/pcma", 8000): "pcma",
}
_SESSION_KEYS = {
    "model", "audio", "client", "delegation", "input", "instructions", "safety_identifier",
    "store", "triggers",
}  # fmt: skip
_UPDATABLE_KEYS = {"delegation", "triggers"}
_AUDIO_KEYS = {"format", "output"}
_OUTPUT_KEYS = {"voice"}
_FORMAT_KEYS = {"type", "rate"}
_DELEGATION_KEYS = {"type", "acknowledgement_delay_ms"}
_MESSAGE_KEYS = {"type", "role", "content", "id", "status"}
_PART_KEYS = {"type", "text"}
# The content part types each startup history role takes (None: the type may be left out).
_PART_TYPES: dict[str, tuple[str | None, ...]] = {
    "user": (None, "input_text"),
    "developer": (None, "input_text"),
    "assistant": (None, "text", "output_text"),
}
_OTHER_DELEGATIONS = ("responses", "decisions")


@dataclass(frozen=True)
class HistoryMessage:
    """One message of the startup history (``session.input``)."""

    role: str
    text: str


@dataclass(frozen=True)
class LiveSessionConfig:
    """The resolved configuration of a started session."""

    id: str
    expires_at: int
    """Unix seconds at which the session expires."""
    model: str
    codec: Codec
    """The session's one audio format, for input and output alike (inside, over WebRTC)."""
    audio_format: dict[str, Any] | None
    """As echoed; None for a WebRTC session (its media negotiated the format)."""
    voice: str | dict[str, Any]
    delegation: dict[str, Any]
    """Always client delegation, resolved: ``{"type": "client", "acknowledgement_delay_ms"}``."""
    instructions: str
    history: tuple[HistoryMessage, ...]
    input_items: tuple[dict[str, Any], ...]
    """The startup history as the client sent it, echoed in the session resource."""
    store: bool
    safety_identifier: str | None

    def resource(self) -> dict[str, Any]:
        """The ``SessionResource`` that ``session.started``, ``.updated`` and ``.closed`` carry."""
        body: dict[str, Any] = {
            "id": self.id,
            "expires_at": self.expires_at,
            "model": self.model,
            "status": "active",
            "audio": {"output": {"voice": self.voice}},
            "delegation": dict(self.delegation),
            "instructions": self.instructions,
            "input": copy.deepcopy(list(self.input_items)),
            "store": self.store,
            "triggers": [],
        }
        if self.audio_format is not None:
            body["audio"]["format"] = dict(self.audio_format)
        if self.safety_identifier is not None:
            body["safety_identifier"] = self.safety_identifier
        return body


def start_config(
    raw: object, *, session_id: str, expires_at: int, media: bool = False
) -> LiveSessionConfig:
    """The configuration a ``session.start``'s ``session`` asks for (``media``: a WebRTC
    creation request's); ProtocolError if the real server would refuse it."""
    session = _object(raw, "session")
    _no_unknown(session, _SESSION_KEYS, "session")
    if session.get("model") is None:
        raise ProtocolError(
            "Missing required parameter: 'session.model'.",
            code="missing_required_parameter",
            param="session.model",
        )
    model = _nonempty_string(session["model"], "session.model")
    if session.get("client") is not None:
        raise ProtocolError(
            "'session.client' configures a WebRTC frontend; a primary WebSocket does not take it."
            if not media
            else "The local server does not restrict a WebRTC frontend's events: leave "
            "'session.client' out.",
            code="unsupported_parameter",
            param="session.client",
        )
    _triggers(session.get("triggers"))
    audio_format, voice = _audio(session.get("audio"))
    if media and isinstance(session.get("audio"), dict) and "format" in session["audio"]:
        raise ProtocolError(
            "WebRTC negotiates the audio format on the media transport: 'session.audio.format' "
            "is for a primary WebSocket.",
            code="unsupported_parameter",
            param="session.audio.format",
        )
    items = _history(session.get("input"))
    instructions = _optional_string(session, "instructions")
    if instructions is None or not instructions.strip():
        # Omitted or blank instructions mean the server's own, as with the real API.
        instructions = DEFAULT_INSTRUCTIONS
    store = session.get("store")
    if store is not None and not isinstance(store, bool):
        raise ProtocolError(
            "Invalid type for 'session.store': expected a boolean.",
            code="invalid_type",
            param="session.store",
        )
    return LiveSessionConfig(
        id=session_id,
        expires_at=expires_at,
        model=model,
        codec=codec(_CODEC_OF_FORMAT[audio_format["type"], audio_format["rate"]]),
        audio_format=None if media else audio_format,
        voice=voice,
        delegation=_delegation(session.get("delegation"), None, "session.delegation"),
        instructions=instructions,
        history=tuple(_message_of(item) for item in items),
        input_items=tuple(copy.deepcopy(items)),
        store=bool(store),
        safety_identifier=_optional_string(session, "safety_identifier"),
    )


def update_config(config: LiveSessionConfig, raw: object) -> LiveSessionConfig:
    """``config`` after a ``session.update``'s ``session``; ProtocolError (and no change) for
    anything Live does not let a running session change."""
    session = _object(raw, "session")
    for key in session:
        if key in _UPDATABLE_KEYS:
            continue
        if key in _SESSION_KEYS:
            raise ProtocolError(
                f"Cannot update 'session.{key}': it is fixed when the session starts. Only "
                "'session.delegation' and 'session.triggers' can change.",
                code="immutable_field_update",
                param=f"session.{key}",
            )
        raise _unknown_parameter(f"session.{key}")
    if "triggers" in session:
        _triggers(session["triggers"])
    if "delegation" not in session:
        return config
    delegation = _delegation(session["delegation"], config.delegation, "session.delegation")
    return replace(config, delegation=delegation)


# ---- the parts ---------------------------------------------------------------------------------


def _audio(raw: object) -> tuple[dict[str, Any], str | dict[str, Any]]:
    """The resolved audio format and voice of ``session.audio``."""
    if raw is None:
        return dict(DEFAULT_FORMAT), DEFAULT_VOICE
    audio = _object(raw, "session.audio")
    _no_unknown(audio, _AUDIO_KEYS, "session.audio")
    fmt = dict(DEFAULT_FORMAT)
    if audio.get("format") is not None:
        fmt = _format(audio["format"])
    voice: str | dict[str, Any] = DEFAULT_VOICE
    if audio.get("output") is not None:
        output = _object(audio["output"], "session.audio.output")
        _no_unknown(output, _OUTPUT_KEYS, "session.audio.output")
        if output.get("voice") is not None:
            voice = _voice(output["voice"])
    return fmt, voice


def _format(raw: object) -> dict[str, Any]:
    param = "session.audio.format"
    fmt = _object(raw, param)
    _no_unknown(fmt, _FORMAT_KEYS, param)
    kind, rate = fmt.get("type"), fmt.get("rate")
    kinds = sorted({k for k, _ in _CODEC_OF_FORMAT})
    if kind not in kinds:
        listed = ", ".join(f"'{k}'" for k in kinds)
        raise ProtocolError(
            f"Invalid value: {kind!r}. Supported values are: {listed}.",
            code="invalid_value",
            param=f"{param}.type",
        )
    rates = sorted(r for k, r in _CODEC_OF_FORMAT if k == kind)
    if "rate" not in fmt:
        raise ProtocolError(
            f"Missing required parameter: '{param}.rate'.",
            code="missing_required_parameter",
            param=f"{param}.rate",
        )
    if not isinstance(rate, int) or isinstance(rate, bool) or rate not in rates:
        listed = ", ".join(str(r) for r in rates)
        raise ProtocolError(
            f"Invalid value: {rate!r}. Supported values for {kind} are: {listed}.",
            code="invalid_value",
            param=f"{param}.rate",
        )
    return {"type": kind, "rate": rate}


def _voice(raw: object) -> str | dict[str, Any]:
    param = "session.audio.output.voice"
    if isinstance(raw, str):
        return _nonempty_string(raw, param)
    voice = _object(raw, param)
    _no_unknown(voice, {"id"}, param)
    _nonempty_string(voice.get("id"), f"{param}.id")
    return dict(voice)


def _delegation(raw: object, current: dict[str, Any] | None, param: str) -> dict[str, Any]:
    """The resolved client delegation of ``raw`` (null: the defaults); ``current`` is the
    session's delegation when ``raw`` comes from an update (omitted settings keep theirs)."""
    resolved: dict[str, Any] = {"type": "client", "acknowledgement_delay_ms": 0}
    if raw is None:
        return resolved
    delegation = _object(raw, param)
    kind = delegation.get("type")
    if kind in _OTHER_DELEGATIONS:
        if current is not None:
            raise ProtocolError(
                f"Cannot change the delegation type from 'client' to '{kind}'.",
                code="immutable_field_update",
                param=f"{param}.type",
            )
        raise ProtocolError(
            f"The local server supports client delegation only, not '{kind}': set "
            f'\'{param}\' to {{"type": "client"}} or leave it null.',
            code="unsupported_value",
            param=f"{param}.type",
        )
    if kind != "client":
        raise ProtocolError(
            f"Invalid value: {kind!r}. Supported values are: 'client', 'responses', and "
            "'decisions'.",
            code="invalid_value",
            param=f"{param}.type",
        )
    _no_unknown(delegation, _DELEGATION_KEYS, param)
    if current is not None:
        resolved = dict(current)
    delay = delegation.get("acknowledgement_delay_ms")
    if delay is not None:
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 0:
            raise ProtocolError(
                f"Invalid value for '{param}.acknowledgement_delay_ms': expected a "
                "non-negative integer.",
                code="invalid_value",
                param=f"{param}.acknowledgement_delay_ms",
            )
        resolved["acknowledgement_delay_ms"] = delay
    return resolved


def _triggers(raw: object) -> None:
    if raw is None:
        return
    if not isinstance(raw, list):
        raise ProtocolError(
            "Invalid type for 'session.triggers': expected an array.",
            code="invalid_type",
            param="session.triggers",
        )
    if raw:
        raise ProtocolError(
            "Decisions triggers are not supported by the local server.",
            code="unsupported_value",
            param="session.triggers",
        )


def _history(raw: object) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolError(
            "Invalid type for 'session.input': expected an array of messages.",
            code="invalid_type",
            param="session.input",
        )
    if len(raw) > MAX_HISTORY_MESSAGES:
        raise ProtocolError(
            f"Invalid 'session.input': at most {MAX_HISTORY_MESSAGES} messages, got {len(raw)}.",
            code="array_above_max_length",
            param="session.input",
        )
    for index, item in enumerate(raw):
        _check_message(item, f"session.input[{index}]")
    return raw


def _check_message(raw: object, param: str) -> None:
    message = _object(raw, param)
    _no_unknown(message, _MESSAGE_KEYS, param)
    if message.get("type", "message") != "message":
        raise ProtocolError(
            f"Invalid value: {message.get('type')!r}. Supported values are: 'message'.",
            code="invalid_value",
            param=f"{param}.type",
        )
    role = message.get("role")
    if role not in _PART_TYPES:
        raise ProtocolError(
            f"Invalid value: {role!r}. Supported values are: 'developer', 'user', and 'assistant'.",
            code="invalid_value",
            param=f"{param}.role",
        )
    if message.get("status") not in (None, "completed", "incomplete"):
        raise ProtocolError(
            f"Invalid value: {message.get('status')!r}. Supported values are: 'completed' "
            "and 'incomplete'.",
            code="invalid_value",
            param=f"{param}.status",
        )
    if "id" in message and not isinstance(message["id"], str):
        raise ProtocolError(
            f"Invalid type for '{param}.id': expected a string.",
            code="invalid_type",
            param=f"{param}.id",
        )
    content = message.get("content")
    if not isinstance(content, list) or len(content) != 1:
        raise ProtocolError(
            f"Invalid '{param}.content': expected exactly one text part.",
            code="invalid_value",
            param=f"{param}.content",
        )
    part = _object(content[0], f"{param}.content[0]")
    _no_unknown(part, _PART_KEYS, f"{param}.content[0]")
    allowed = _PART_TYPES[role]
    if part.get("type") not in allowed:
        listed = ", ".join(f"'{kind}'" for kind in allowed if kind is not None)
        raise ProtocolError(
            f"Invalid value: {part.get('type')!r}. A {role} message takes {listed} content.",
            code="invalid_value",
            param=f"{param}.content[0].type",
        )
    if not isinstance(part.get("text"), str):
        raise ProtocolError(
            f"Missing required parameter: '{param}.content[0].text'.",
            code="missing_required_parameter",
            param=f"{param}.content[0].text",
        )


def _message_of(item: dict[str, Any]) -> HistoryMessage:
    return HistoryMessage(item["role"], item["content"][0]["text"])


# ---- checks --------------------------------------------------------------------------------


def _object(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(
            f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param
        )
    return value


def _no_unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unknown_parameter(f"{where}.{key}")


def _unknown_parameter(param: str) -> ProtocolError:
    return ProtocolError(f"Unknown parameter: '{param}'.", code="unknown_parameter", param=param)


def _nonempty_string(value: object, param: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ProtocolError(
            f"Invalid value for '{param}': expected a non-empty string.",
            code="invalid_value" if isinstance(value, str) else "invalid_type",
            param=param,
        )
    return value


def _optional_string(session: dict[str, Any], key: str) -> str | None:
    value = session.get(key)
    if value is not None and not isinstance(value, str):
        raise ProtocolError(
            f"Invalid type for 'session.{key}': expected a string.",
            code="invalid_type",
            param=f"session.{key}",
        )
    return value
