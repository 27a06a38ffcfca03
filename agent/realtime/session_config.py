"""The ``session.update`` a call sends, built from the agent profile for one dialect.

Both dialects carry the same settings in different shapes (GA nests audio settings under
``audio.input``/``audio.output``; beta keeps them flat). Settings a dialect does not have are
left out rather than sent and rejected: temperature exists only in beta, stored prompts only
in GA.
"""

from __future__ import annotations

from collections.abc import Mapping
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


def prompt_reference(profile: AgentProfile, call_vars: Mapping[str, str]) -> dict[str, Any] | None:
    """The GA stored-prompt reference, with ``{caller}``-style placeholders filled in."""
    prompt = profile.prompt
    if not prompt.id:
        return None
    reference: dict[str, Any] = {"id": prompt.id}
    if prompt.version:
        reference["version"] = prompt.version
    if prompt.variables:
        reference["variables"] = {
            name: _fill(template, call_vars) for name, template in prompt.variables.items()
        }
    return reference


def _fill(template: str, call_vars: Mapping[str, str]) -> str:
    for name, value in call_vars.items():
        template = template.replace("{" + name + "}", value)
    return template


def session_update(
    profile: AgentProfile,
    dialect: Dialect,
    codec: str = "pcm16",
    *,
    call_vars: Mapping[str, str] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A ``session.update`` client event.

    ``codec`` is "pcm16", "pcmu" or "pcma"; ``call_vars`` fill stored-prompt variables
    (``caller``, ``dialed``, ``call_id``); ``tools`` are function tool definitions.
    """
    fmt = audio_format(dialect, codec)
    turn_detection = turn_detection_config(profile.turn_detection, dialect)
    transcription = (
        {"model": profile.input_transcription_model} if profile.input_transcription_model else None
    )
    noise = {"type": profile.noise_reduction} if profile.noise_reduction else None
    session: dict[str, Any]
    if dialect is Dialect.GA:
        audio_in: dict[str, Any] = {"format": fmt, "turn_detection": turn_detection}
        if transcription:
            audio_in["transcription"] = transcription
        if noise:
            audio_in["noise_reduction"] = noise
        session = {
            "type": "realtime",
            "output_modalities": ["audio"],
            "instructions": profile.instructions,
            "audio": {"input": audio_in, "output": {"format": fmt, "voice": profile.voice}},
        }
        if profile.max_output_tokens:
            session["max_output_tokens"] = profile.max_output_tokens
        prompt = prompt_reference(profile, call_vars or {})
        if prompt:
            session["prompt"] = prompt
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
        if noise:
            session["input_audio_noise_reduction"] = noise
        if profile.temperature:
            session["temperature"] = profile.temperature
        if profile.max_output_tokens:
            session["max_response_output_tokens"] = profile.max_output_tokens
    if tools:
        session["tools"] = tools
        session["tool_choice"] = "auto"
    return {"type": "session.update", "session": session}


def audio_format_update(dialect: Dialect, codec: str) -> dict[str, Any]:
    """A ``session.update`` changing only the audio formats (G.711 passthrough)."""
    fmt = audio_format(dialect, codec)
    if dialect is Dialect.GA:
        session: dict[str, Any] = {
            "type": "realtime",
            "audio": {"input": {"format": fmt}, "output": {"format": fmt}},
        }
    else:
        session = {"input_audio_format": fmt, "output_audio_format": fmt}
    return {"type": "session.update", "session": session}


def greeting_request(greeting: str) -> dict[str, Any]:
    """``response.create`` making the agent speak first, with the profile's greeting."""
    return {"type": "response.create", "response": {"instructions": greeting}}
