"""The two wire dialects of the realtime protocol, mapped to one internal vocabulary.

OpenAI's GA API and Azure's ``/openai/v1/realtime`` speak the *GA* dialect; Azure's
``api-version=2025-04-01-preview`` speaks the older *beta* dialect. They differ in the names of
the response output events and in the shape of ``session.update``. Everything that depends on
the difference lives here, so adding a dialect touches this one file.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from agent.audio.codecs import TRACK_PCM16
from agent.bridge.requests import SessionSpec


class Dialect(StrEnum):
    GA = "ga"
    BETA = "beta"


#: The Azure preview api-version that speaks the beta dialect (the only one; deprecated).
BETA_API_VERSION = "2025-04-01-preview"


class OutputEvent(StrEnum):
    """Internal names for the response-output server events whose wire names differ."""

    AUDIO_DELTA = "audio_delta"
    AUDIO_DONE = "audio_done"
    TRANSCRIPT_DELTA = "transcript_delta"
    TRANSCRIPT_DONE = "transcript_done"
    TEXT_DELTA = "text_delta"
    TEXT_DONE = "text_done"


_WIRE_NAMES: dict[OutputEvent, dict[Dialect, str]] = {
    OutputEvent.AUDIO_DELTA: {
        Dialect.GA: "response.output_audio.delta",
        Dialect.BETA: "response.audio.delta",
    },
    OutputEvent.AUDIO_DONE: {
        Dialect.GA: "response.output_audio.done",
        Dialect.BETA: "response.audio.done",
    },
    OutputEvent.TRANSCRIPT_DELTA: {
        Dialect.GA: "response.output_audio_transcript.delta",
        Dialect.BETA: "response.audio_transcript.delta",
    },
    OutputEvent.TRANSCRIPT_DONE: {
        Dialect.GA: "response.output_audio_transcript.done",
        Dialect.BETA: "response.audio_transcript.done",
    },
    OutputEvent.TEXT_DELTA: {
        Dialect.GA: "response.output_text.delta",
        Dialect.BETA: "response.text.delta",
    },
    OutputEvent.TEXT_DONE: {
        Dialect.GA: "response.output_text.done",
        Dialect.BETA: "response.text.done",
    },
}

_FROM_WIRE: dict[Dialect, dict[str, OutputEvent]] = {
    dialect: {names[dialect]: internal for internal, names in _WIRE_NAMES.items()}
    for dialect in Dialect
}


def wire_name(dialect: Dialect, event: OutputEvent) -> str:
    """The wire ``type`` of an output event in ``dialect``."""
    return _WIRE_NAMES[event][dialect]


def output_event(dialect: Dialect, wire_type: str) -> OutputEvent | None:
    """The internal name of a wire event type, or None when it is not a dialect-specific one."""
    return _FROM_WIRE[dialect].get(wire_type)


def audio_format(dialect: Dialect, codec: str) -> dict[str, object] | str:
    """The session audio format for ``codec`` ("pcm16", "pcmu" or "pcma") in ``dialect``.

    GA sessions describe formats as objects (``{"type": "audio/pcm", "rate": 24000}``); beta
    sessions use bare strings (``"pcm16"``, ``"g711_ulaw"``).
    """
    if dialect is Dialect.GA:
        if codec == "pcm16":
            return {"type": "audio/pcm", "rate": 24000}
        return {"type": f"audio/{codec}"}
    return {"pcm16": "pcm16", "pcmu": "g711_ulaw", "pcma": "g711_alaw"}[codec]


def codec_of_format(fmt: object) -> str:
    """Inverse of :func:`audio_format` for either dialect; defaults to pcm16."""
    if isinstance(fmt, dict):
        kind = str(fmt.get("type", "audio/pcm"))
        return {"audio/pcmu": "pcmu", "audio/pcma": "pcma"}.get(kind, "pcm16")
    return {"g711_ulaw": "pcmu", "g711_alaw": "pcma"}.get(str(fmt), "pcm16")


def session_body(dialect: Dialect, spec: SessionSpec) -> dict[str, Any]:
    """The ``session`` object of a ``session.update`` in ``dialect``.

    Settings a dialect does not have are left out rather than sent and rejected: temperature
    exists only in beta; stored prompts, ``idle_timeout_ms``, output speed, noise reduction
    strength, reasoning effort, truncation and server-side MCP tools only in GA.
    """
    # Over WebRTC the SDP negotiated the codec (Opus): the session names no audio format.
    fmt = audio_format(dialect, spec.codec) if spec.codec != TRACK_PCM16.name else None
    turn = dict(spec.turn_detection) if spec.turn_detection is not None else None
    transcription = {"model": spec.transcription_model} if spec.transcription_model else None
    noise: dict[str, Any] | None = {"type": spec.noise_reduction} if spec.noise_reduction else None
    session: dict[str, Any]
    tools = list(spec.tools)
    if dialect is Dialect.GA:
        audio_in: dict[str, Any] = {"turn_detection": turn}
        if fmt is not None:
            audio_in["format"] = fmt
        if transcription:
            audio_in["transcription"] = transcription
        if noise:
            if spec.noise_reduction_strength:
                noise["strength"] = spec.noise_reduction_strength
            audio_in["noise_reduction"] = noise
        audio_out: dict[str, Any] = {"voice": spec.voice}
        if fmt is not None:
            audio_out["format"] = fmt
        if spec.speed != 1.0:
            audio_out["speed"] = spec.speed
        session = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": spec.instructions,
            "audio": {"input": audio_in, "output": audio_out},
        }
        if spec.max_output_tokens:
            session["max_output_tokens"] = spec.max_output_tokens
        if spec.prompt:
            session["prompt"] = spec.prompt
        if spec.reasoning_effort:
            session["reasoning"] = {"effort": spec.reasoning_effort}
        if spec.truncation == "retention_ratio":
            session["truncation"] = {
                "type": "retention_ratio",
                "retention_ratio": spec.retention_ratio,
            }
        elif spec.truncation:
            session["truncation"] = spec.truncation
        tools.extend(spec.server_tools)
    else:
        if turn is not None:
            turn.pop("idle_timeout_ms", None)
        session = {
            "modalities": ["audio", "text"],
            "instructions": spec.instructions,
            "voice": spec.voice,
            "input_audio_format": fmt,
            "output_audio_format": fmt,
            "turn_detection": turn,
        }
        if transcription:
            session["input_audio_transcription"] = transcription
        if noise:
            session["input_audio_noise_reduction"] = noise
        if spec.temperature:
            session["temperature"] = spec.temperature
        if spec.max_output_tokens:
            session["max_response_output_tokens"] = spec.max_output_tokens
    if tools:
        session["tools"] = tools
        session["tool_choice"] = "auto"
    return session


def format_update_body(dialect: Dialect, codec: str) -> dict[str, Any]:
    """The ``session`` object of a ``session.update`` that changes only the audio formats."""
    fmt = audio_format(dialect, codec)
    if dialect is Dialect.GA:
        return {"type": "realtime", "audio": {"input": {"format": fmt}, "output": {"format": fmt}}}
    return {"input_audio_format": fmt, "output_audio_format": fmt}
