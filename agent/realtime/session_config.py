"""The ``session.update`` a call sends, built from the agent profile.

The profile becomes a dialect-neutral :class:`~agent.realtime.dialect.SessionSpec`; the
dialect module gives it its wire shape.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from agent.bridge.requests import ConfigureSession, SessionSpec
from agent.config import AgentProfile, LiveSettings, TurnDetection
from agent.realtime.adapter import RealtimeAdapter
from agent.realtime.dialect import Dialect


def turn_detection_config(td: TurnDetection) -> dict[str, Any] | None:
    """The neutral ``turn_detection`` object, or None to turn server-side VAD off."""
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
    if td.idle_timeout_ms > 0:
        config["idle_timeout_ms"] = td.idle_timeout_ms
    return config


def prompt_reference(profile: AgentProfile, call_vars: Mapping[str, str]) -> dict[str, Any] | None:
    """The stored-prompt reference, with ``{caller}``-style placeholders filled in."""
    prompt = profile.prompt
    if not prompt.id:
        return None
    reference: dict[str, Any] = {"id": prompt.id}
    if prompt.version:
        reference["version"] = prompt.version
    if prompt.variables:
        reference["variables"] = {
            name: fill_variables(template, call_vars) for name, template in prompt.variables.items()
        }
    return reference


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def fill_variables(template: str, call_vars: Mapping[str, str]) -> str:
    """``template`` with each ``{name}`` of ``call_vars`` replaced by its value, in one pass
    (a value that itself reads ``{caller}`` stays as it is); other braces are left alone."""
    return _PLACEHOLDER.sub(lambda m: call_vars.get(m.group(1), m.group(0)), template)


def session_spec(
    profile: AgentProfile,
    codec: str = "pcm16",
    *,
    call_vars: Mapping[str, str] | None = None,
    tools: list[dict[str, Any]] | None = None,
    server_tools: list[dict[str, Any]] | None = None,
    live: LiveSettings | None = None,
) -> SessionSpec:
    """The profile's session settings for one call, in no protocol's shape (``live``: the
    GPT-Live settings, for a Live session)."""
    return SessionSpec(
        instructions=fill_variables(profile.instructions, call_vars or {}),
        voice=profile.voice,
        codec=codec,
        turn_detection=turn_detection_config(profile.turn_detection),
        transcription_model=profile.input_transcription_model,
        noise_reduction=profile.noise_reduction,
        noise_reduction_strength=profile.noise_reduction_strength,
        max_output_tokens=profile.max_output_tokens,
        temperature=profile.temperature,
        speed=profile.speed,
        reasoning_effort=profile.reasoning_effort,
        truncation=profile.truncation,
        retention_ratio=profile.truncation_retention_ratio,
        prompt=prompt_reference(profile, call_vars or {}),
        tools=list(tools or []),
        server_tools=list(server_tools or []),
        model=live.model if live is not None else "",
        acknowledgement_delay_ms=live.acknowledgement_delay_ms if live is not None else 0,
    )


def session_update(
    profile: AgentProfile,
    dialect: Dialect,
    codec: str = "pcm16",
    *,
    call_vars: Mapping[str, str] | None = None,
    tools: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The ``session.update`` a session of ``dialect`` gets for ``profile`` (as a dict).

    ``codec`` is "pcm16", "pcmu" or "pcma"; ``call_vars`` fill stored-prompt variables
    (``caller``, ``dialed``, ``call_id``); ``tools`` are function tool definitions.
    """
    spec = session_spec(profile, codec, call_vars=call_vars, tools=tools)
    return RealtimeAdapter(dialect).wire(ConfigureSession(spec))[0]
