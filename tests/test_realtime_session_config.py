"""Every client event the agent builds, in both dialects, against the openai models."""

from __future__ import annotations

import dataclasses

import pytest

from agent.config import AgentProfile, PromptReference, TurnDetection
from agent.realtime.dialect import Dialect
from agent.realtime.session_config import session_update
from testbed.oracle import validate_client_event

FULL = AgentProfile(
    instructions="Be brief.",
    voice="cedar",
    greeting="Say hello.",
    input_transcription_model="gpt-4o-mini-transcribe",
    temperature=0.7,
    max_output_tokens=400,
    noise_reduction="near_field",
    turn_detection=TurnDetection(idle_timeout_ms=6000),
    prompt=PromptReference(
        id="pmpt_123", version="2", variables={"caller": "{caller}", "line": "{dialed}"}
    ),
)
PROFILES = [
    AgentProfile(),
    FULL,
    dataclasses.replace(FULL, turn_detection=TurnDetection(type="semantic_vad", eagerness="low")),
    dataclasses.replace(FULL, turn_detection=TurnDetection(type="none")),
]
TOOL = {
    "type": "function",
    "name": "end_call",
    "description": "Hang up.",
    "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
}


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("codec", ["pcm16", "pcmu", "pcma"])
@pytest.mark.parametrize("profile", PROFILES)
def test_session_update_is_valid(dialect: Dialect, codec: str, profile: AgentProfile) -> None:
    event = session_update(
        profile, dialect, codec, call_vars={"caller": "+15551234", "dialed": "100"}, tools=[TOOL]
    )
    validate_client_event(dialect, event)


def test_ga_shape_carries_every_profile_setting() -> None:
    session = session_update(FULL, Dialect.GA, "pcmu", call_vars={"caller": "+1555"})["session"]
    assert session["type"] == "realtime"
    assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
    assert session["audio"]["output"] == {"format": {"type": "audio/pcmu"}, "voice": "cedar"}
    assert session["audio"]["input"]["transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert session["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert session["audio"]["input"]["turn_detection"]["idle_timeout_ms"] == 6000
    assert session["max_output_tokens"] == 400
    assert session["prompt"] == {
        "id": "pmpt_123",
        "version": "2",
        "variables": {"caller": "+1555", "line": "{dialed}"},
    }
    assert "temperature" not in session  # GA has none


def test_beta_shape_carries_every_profile_setting() -> None:
    session = session_update(FULL, Dialect.BETA, "pcma")["session"]
    assert session["modalities"] == ["audio", "text"]
    assert session["input_audio_format"] == session["output_audio_format"] == "g711_alaw"
    assert session["voice"] == "cedar"
    assert session["temperature"] == 0.7
    assert session["max_response_output_tokens"] == 400
    assert session["input_audio_transcription"] == {"model": "gpt-4o-mini-transcribe"}
    assert "idle_timeout_ms" not in session["turn_detection"]
    assert "prompt" not in session  # beta has no stored prompts
