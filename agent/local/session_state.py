"""The session object of one local connection, kept in its dialect's own wire shape.

The wire dict is the single source of truth: ``session.update`` is deep-merged into it (an
explicit ``null`` clears a field, e.g. ``turn_detection``), ``session.created``/``updated``
echo it, and the typed accessors below read the few settings the server acts on.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

from agent.audio.codecs import Codec, codec
from agent.local.events import ProtocolError, new_id
from agent.local.vad import VadConfig
from agent.realtime.dialect import Dialect, audio_format, codec_of_format
from agent.realtime.models import DEFAULT_REALTIME_MODEL

GA_MODEL = DEFAULT_REALTIME_MODEL
# The beta session schema only admits known model names, so report a real preview model
# whatever the Azure deployment is called.
BETA_MODEL = "gpt-4o-realtime-preview"
DEFAULT_VOICE = "alloy"
DEFAULT_INSTRUCTIONS = "You are the local test agent. Keep replies short."
_SESSION_TTL_S = 30 * 60

# Fields a client may set. The real API rejects unknown parameters, and so do we: a beta
# field sent to a GA endpoint (or the reverse) is a client bug worth surfacing.
_GA_KEYS = {
    "type",
    "model",
    "output_modalities",
    "instructions",
    "audio",
    "include",
    "tracing",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "truncation",
    "prompt",
    "parallel_tool_calls",
    "reasoning",
}
_GA_AUDIO_KEYS = {"input", "output"}
_GA_INPUT_KEYS = {"format", "noise_reduction", "transcription", "turn_detection"}
_GA_OUTPUT_KEYS = {"format", "voice", "speed"}
_BETA_KEYS = {
    "model",
    "modalities",
    "instructions",
    "voice",
    "input_audio_format",
    "output_audio_format",
    "input_audio_transcription",
    "input_audio_noise_reduction",
    "turn_detection",
    "tools",
    "tool_choice",
    "temperature",
    "max_response_output_tokens",
    "speed",
    "tracing",
    "client_secret",
}
_TURN_KEYS = {
    "type",
    "threshold",
    "prefix_padding_ms",
    "silence_duration_ms",
    "create_response",
    "interrupt_response",
    "idle_timeout_ms",
    "eagerness",
}
_BETA_FORMATS = {"pcm16", "g711_ulaw", "g711_alaw"}


@dataclass(frozen=True)
class TurnDetection:
    """Server VAD settings; ``semantic_vad`` is served by the same detector as ``server_vad``.

    ``idle_timeout_ms`` is None unless set (GA ``server_vad`` only, as with the real API).
    """

    vad: VadConfig
    create_response: bool
    interrupt_response: bool
    idle_timeout_ms: int | None = None


def default_turn_detection() -> dict[str, Any]:
    return {
        "type": "server_vad",
        "threshold": 0.5,
        "prefix_padding_ms": 300,
        "silence_duration_ms": 200,
        "idle_timeout_ms": None,
        "create_response": True,
        "interrupt_response": True,
    }


def default_session(dialect: Dialect, model: str | None = None) -> dict[str, Any]:
    """A full session object as ``session.created`` reports it."""
    common: dict[str, Any] = {
        "object": "realtime.session",
        "id": new_id("sess"),
        "expires_at": int(time.time()) + _SESSION_TTL_S,
        "instructions": DEFAULT_INSTRUCTIONS,
        "tools": [],
        "tool_choice": "auto",
        "tracing": None,
    }
    if dialect is Dialect.GA:
        return {
            "type": "realtime",
            **common,
            "model": model or GA_MODEL,
            "output_modalities": ["audio"],
            "max_output_tokens": "inf",
            "truncation": "auto",
            "prompt": None,
            "include": None,
            "audio": {
                "input": {
                    "format": audio_format(dialect, "pcm16"),
                    "transcription": None,
                    "noise_reduction": None,
                    "turn_detection": default_turn_detection(),
                },
                "output": {
                    "format": audio_format(dialect, "pcm16"),
                    "voice": DEFAULT_VOICE,
                    "speed": 1.0,
                },
            },
        }
    return {
        **common,
        "model": BETA_MODEL,
        "modalities": ["text", "audio"],
        "voice": DEFAULT_VOICE,
        "input_audio_format": audio_format(dialect, "pcm16"),
        "output_audio_format": audio_format(dialect, "pcm16"),
        "input_audio_transcription": None,
        "input_audio_noise_reduction": None,
        "turn_detection": default_turn_detection(),
        "temperature": 0.8,
        "max_response_output_tokens": "inf",
        "speed": 1.0,
    }


class SessionState:
    """One connection's session settings, validated on every update."""

    def __init__(self, dialect: Dialect, model: str | None = None) -> None:
        self.dialect = dialect
        self.data = default_session(dialect, model)

    def wire(self) -> dict[str, Any]:
        return copy.deepcopy(self.data)

    def update(self, session: object) -> None:
        """Merge a ``session.update`` payload; on error nothing changes."""
        if not isinstance(session, dict):
            raise ProtocolError(
                "'session' must be an object.", code="invalid_type", param="session"
            )
        if self.dialect is Dialect.GA:
            _check_ga(session)
        else:
            _check_beta(session)
        merged = copy.deepcopy(self.data)
        _deep_merge(merged, session)
        if self.dialect is Dialect.GA:
            # Echo formats in full (``audio/pcm`` with its rate), as the API does.
            for side in ("input", "output"):
                part = merged["audio"][side]
                part["format"] = audio_format(self.dialect, codec_of_format(part.get("format")))
        # The object may be valid piecewise and still inconsistent as a whole.
        check_modalities(self.dialect, self._modalities_of(merged))
        self.data = merged

    @property
    def _ga_audio(self) -> dict[str, Any]:
        return self.data.get("audio") or {}

    def _modalities_of(self, data: dict[str, Any]) -> list[str]:
        key = "output_modalities" if self.dialect is Dialect.GA else "modalities"
        return list(data.get(key) or [])

    @property
    def input_codec(self) -> Codec:
        if self.dialect is Dialect.GA:
            return codec(codec_of_format((self._ga_audio.get("input") or {}).get("format")))
        return codec(codec_of_format(self.data.get("input_audio_format")))

    @property
    def output_codec(self) -> Codec:
        if self.dialect is Dialect.GA:
            return codec(codec_of_format((self._ga_audio.get("output") or {}).get("format")))
        return codec(codec_of_format(self.data.get("output_audio_format")))

    @property
    def output_format(self) -> dict[str, Any] | str:
        return audio_format(self.dialect, self.output_codec.name)

    @property
    def voice(self) -> str:
        if self.dialect is Dialect.GA:
            voice = (self._ga_audio.get("output") or {}).get("voice")
        else:
            voice = self.data.get("voice")
        return voice if isinstance(voice, str) else DEFAULT_VOICE

    @property
    def instructions(self) -> str:
        return str(self.data.get("instructions") or "")

    @property
    def modalities(self) -> list[str]:
        return self._modalities_of(self.data)

    @property
    def turn_detection(self) -> TurnDetection | None:
        if self.dialect is Dialect.GA:
            raw = (self._ga_audio.get("input") or {}).get("turn_detection")
        else:
            raw = self.data.get("turn_detection")
        if not isinstance(raw, dict):
            return None
        defaults = VadConfig()
        vad = VadConfig(
            threshold=_number(raw.get("threshold"), defaults.threshold),
            prefix_padding_ms=int(
                _number(raw.get("prefix_padding_ms"), defaults.prefix_padding_ms)
            ),
            silence_duration_ms=int(
                _number(raw.get("silence_duration_ms"), defaults.silence_duration_ms)
            ),
        )
        idle = raw.get("idle_timeout_ms")
        idle_applies = (
            self.dialect is Dialect.GA
            and raw.get("type") == "server_vad"
            and isinstance(idle, int)
            and not isinstance(idle, bool)
            and idle > 0
        )
        return TurnDetection(
            vad=vad,
            create_response=raw.get("create_response") is not False,
            interrupt_response=raw.get("interrupt_response") is not False,
            idle_timeout_ms=idle if idle_applies else None,
        )

    @property
    def transcription_enabled(self) -> bool:
        """True when the client asked for transcripts of its audio turns."""
        if self.dialect is Dialect.GA:
            raw = (self._ga_audio.get("input") or {}).get("transcription")
        else:
            raw = self.data.get("input_audio_transcription")
        return isinstance(raw, dict)

    @property
    def tools(self) -> dict[str, dict[str, Any]]:
        """The functions the model may call now (after ``tool_choice``) -> argument schemas."""
        offered: dict[str, dict[str, Any]] = {}
        for tool in self.data.get("tools") or []:
            if not (
                isinstance(tool, dict)
                and tool.get("type", "function") == "function"
                and isinstance(tool.get("name"), str)
            ):
                continue
            parameters = tool.get("parameters")
            offered[tool["name"]] = parameters if isinstance(parameters, dict) else {}
        choice = self.data.get("tool_choice")
        if choice == "none":
            return {}
        if isinstance(choice, dict) and isinstance(choice.get("name"), str):
            return {name: schema for name, schema in offered.items() if name == choice["name"]}
        return offered


def _number(value: object, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float(default)


# Objects that are replaced as a whole rather than merged: a new format must not inherit the
# old one's ``rate``, and a new turn detection config starts from its type's defaults.
_ATOMIC_KEYS = {"format", "turn_detection"}


def _deep_merge(target: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if key == "turn_detection" and isinstance(value, dict):
            target[key] = {**_turn_defaults(value.get("type")), **copy.deepcopy(value)}
        elif (
            isinstance(value, dict)
            and isinstance(target.get(key), dict)
            and key not in _ATOMIC_KEYS
        ):
            _deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def _turn_defaults(kind: object) -> dict[str, Any]:
    if kind == "semantic_vad":
        return {
            "type": kind,
            "eagerness": "auto",
            "create_response": True,
            "interrupt_response": True,
        }
    return default_turn_detection()


def _unknown(obj: dict[str, Any], allowed: set[str], where: str) -> None:
    for key in obj:
        if key not in allowed:
            raise ProtocolError(
                f"Unknown parameter: '{where}.{key}'.",
                code="unknown_parameter",
                param=f"{where}.{key}",
            )


def _object(value: object, param: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ProtocolError(f"'{param}' must be an object.", code="invalid_type", param=param)
    return value


def _check_ga(session: dict[str, Any]) -> None:
    _unknown(session, _GA_KEYS, "session")
    if session.get("type") != "realtime":
        if "type" not in session:
            raise ProtocolError(
                "Missing required parameter: 'session.type'.",
                code="missing_required_parameter",
                param="session.type",
            )
        raise ProtocolError(
            f"Invalid value: '{session['type']}'. Supported values are: 'realtime'.",
            code="invalid_value",
            param="session.type",
        )
    if "audio" in session:
        audio = _object(session["audio"], "session.audio")
        _unknown(audio, _GA_AUDIO_KEYS, "session.audio")
        if "input" in audio:
            given = _object(audio["input"], "session.audio.input")
            _unknown(given, _GA_INPUT_KEYS, "session.audio.input")
            if "format" in given:
                _check_ga_format(given["format"], "session.audio.input.format")
            if "turn_detection" in given:
                _check_turn_detection(given["turn_detection"], "session.audio.input.turn_detection")
        if "output" in audio:
            given = _object(audio["output"], "session.audio.output")
            _unknown(given, _GA_OUTPUT_KEYS, "session.audio.output")
            if "format" in given:
                _check_ga_format(given["format"], "session.audio.output.format")
    if "output_modalities" in session:
        check_modalities(Dialect.GA, session["output_modalities"])
    _check_string(session, "instructions")


def _check_beta(session: dict[str, Any]) -> None:
    _unknown(session, _BETA_KEYS, "session")
    for key in ("input_audio_format", "output_audio_format"):
        if key in session and session[key] not in _BETA_FORMATS:
            raise ProtocolError(
                f"Invalid value: '{session[key]}'. Supported values are: "
                "'pcm16', 'g711_ulaw', and 'g711_alaw'.",
                code="invalid_value",
                param=f"session.{key}",
            )
    if "turn_detection" in session:
        _check_turn_detection(session["turn_detection"], "session.turn_detection")
    if "modalities" in session:
        check_modalities(Dialect.BETA, session["modalities"])
    _check_string(session, "instructions")


def _check_string(session: dict[str, Any], key: str) -> None:
    if key in session and not isinstance(session[key], str):
        raise ProtocolError(
            f"Invalid type for 'session.{key}': expected a string.",
            code="invalid_type",
            param=f"session.{key}",
        )


def _check_ga_format(fmt: object, param: str) -> None:
    fmt = _object(fmt, param)
    kind = fmt.get("type")
    if kind not in ("audio/pcm", "audio/pcmu", "audio/pcma"):
        raise ProtocolError(
            f"Invalid value: '{kind}'. Supported values are: 'audio/pcm', 'audio/pcmu', "
            "and 'audio/pcma'.",
            code="invalid_value",
            param=f"{param}.type",
        )
    if kind == "audio/pcm" and fmt.get("rate", 24000) != 24000:
        raise ProtocolError(
            f"Invalid value: {fmt.get('rate')}. Supported values are: 24000.",
            code="invalid_value",
            param=f"{param}.rate",
        )


def _check_turn_detection(value: object, param: str) -> None:
    if value is None:
        return
    turn = _object(value, param)
    _unknown(turn, _TURN_KEYS, param)
    if turn.get("type") not in ("server_vad", "semantic_vad"):
        raise ProtocolError(
            f"Invalid value: '{turn.get('type')}'. Supported values are: 'server_vad' and "
            "'semantic_vad'.",
            code="invalid_value",
            param=f"{param}.type",
        )
    threshold = turn.get("threshold")
    if threshold is not None and (
        not isinstance(threshold, int | float)
        or isinstance(threshold, bool)
        or not 0 <= threshold <= 1
    ):
        raise ProtocolError(
            f"Invalid value for '{param}.threshold': expected a number between 0 and 1.",
            code="invalid_value",
            param=f"{param}.threshold",
        )
    for key in ("prefix_padding_ms", "silence_duration_ms", "idle_timeout_ms"):
        ms = turn.get(key)
        if ms is not None and (not isinstance(ms, int) or isinstance(ms, bool) or ms < 0):
            raise ProtocolError(
                f"Invalid value for '{param}.{key}': expected a non-negative integer.",
                code="invalid_value",
                param=f"{param}.{key}",
            )
    for key in ("create_response", "interrupt_response"):
        flag = turn.get(key)
        if flag is not None and not isinstance(flag, bool):
            raise ProtocolError(
                f"Invalid type for '{param}.{key}': expected a boolean.",
                code="invalid_type",
                param=f"{param}.{key}",
            )


def check_modalities(dialect: Dialect, value: object, where: str = "session") -> None:
    """Reject modality lists the dialect does not accept (also used for ``response.create``)."""
    key = "output_modalities" if dialect is Dialect.GA else "modalities"
    if not isinstance(value, list) or not value or any(m not in ("text", "audio") for m in value):
        raise ProtocolError(
            f"Invalid value for '{key}': expected a list of 'text' and/or 'audio'.",
            code="invalid_value",
            param=f"{where}.{key}",
        )
    if dialect is Dialect.GA and len(set(value)) > 1:
        # GA answers either with audio (plus its transcript) or with text, never both.
        raise ProtocolError(
            "Invalid value for 'output_modalities': 'text' and 'audio' cannot be combined.",
            code="invalid_value",
            param=f"{where}.output_modalities",
        )
    if dialect is Dialect.BETA and "audio" in value and "text" not in value:
        raise ProtocolError(
            "Invalid modalities: ['audio']. Supported combinations are: ['text'] and "
            "['audio', 'text'].",
            code="invalid_value",
            param=f"{where}.modalities",
        )
