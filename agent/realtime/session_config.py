"""The ``session.update`` a call sends, built from the agent profile for one dialect."""

from __future__ import annotations

from typing import Any

from agent.config import AgentProfile, TurnDetection
from agent.realtime.dialect import Dialect, audio_format


def turn_detection_config(td: TurnDetection, dialect: Dialect) -> dict[str, Any] | None:
    """The ``turn_detection`` object, or None to turn server-side VAD off."""
    if td.type == "none":
        return None
    common = {"create_response": td.create_response, "interrupt_response": td.interrupt_response}
    if td.type == "semantic_vad":
        return {"type": "semantic_vad", "eagerness": td.eagerness, **common}
    config: dict[str, Any] = {
        "type": "server_vad",
        "threshold": td.threshold,
        "prefix_padding_ms": td.prefix_padding_ms,
        "silence_duration_ms": td.silence_duration_ms,
        **common,
    }
    # idle_timeout_ms exists only in the GA schema.
    if td.idle_timeout_ms > 0 and dialect is Dialect.GA:
        config["idle_timeout_ms"] = td.idle_timeout_ms
    return config


def session_update(profile: AgentProfile, dialect: Dialect, codec: str = "pcm16") -> dict[str, Any]:
    """A ``session.update`` client event; ``codec`` is "pcm16", "pcmu" or "pcma"."""
    fmt = audio_format(dialect, codec)
    turn_detection = turn_detection_config(profile.turn_detection, dialect)
    transcription = (
        {"model": profile.input_transcription_model} if profile.input_transcription_model else None
    )
    if dialect is Dialect.GA:
        audio_in: dict[str, Any] = {"format": fmt, "turn_detection": turn_detection}
        if transcription:
            audio_in["transcription"] = transcription
        session: dict[str, Any] = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": profile.instructions,
            "audio": {"input": audio_in, "output": {"format": fmt, "voice": profile.voice}},
        }
    else:
        session = {
            "modalities": ["audio", "text"],
            "instructions": profile.instructions,
            "voice": profile.voice,
            "input_audio_format": fmt,
            "output_audio_format": fmt,
            "turn_detection": turn_detection,
        }
        if transcription:
            session["input_audio_transcription"] = transcription
    return {"type": "session.update", "session": session}


def greeting_request(greeting: str) -> dict[str, Any]:
    """``response.create`` making the agent speak first, with the profile's greeting."""
    return {"type": "response.create", "response": {"instructions": greeting}}
