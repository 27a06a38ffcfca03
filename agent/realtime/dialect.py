"""The two wire dialects of the realtime protocol, mapped to one internal vocabulary.

OpenAI's GA API and Azure's ``/openai/v1/realtime`` speak the *GA* dialect; Azure's
``api-version=2025-04-01-preview`` speaks the older *beta* dialect. They differ in the names of
the response output events and in the shape of ``session.update``. Everything that depends on
the difference lives here, so adding a dialect touches this one file.
"""

from __future__ import annotations

from enum import StrEnum


class Dialect(StrEnum):
    GA = "ga"
    BETA = "beta"


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
