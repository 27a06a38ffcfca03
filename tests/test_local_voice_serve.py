"""`voice-agent serve` with no cloud key answers with the voice backend, loading its models in
the background: the agent is listening before they are loaded."""

from __future__ import annotations

from pathlib import Path

import pytest

from testbed.peers import AgentProcess, engine_args, free_port

pytestmark = pytest.mark.timeout(60)


async def test_serve_without_a_key_starts_the_voice_backend(engine: str) -> None:
    agent = AgentProcess(free_port(), engine_args(engine))
    await agent.start()
    try:
        listening = agent.events("agent_listening")[0]
        assert listening["backend"].startswith("local ws://127.0.0.1:")
        # Every call's media and session traffic runs on uvloop's loop (agent.event_loop).
        assert listening["event_loop"] == "uvloop"
        loaded = await agent.wait_for("local_model_loaded", 30, count=2)
        assert {line["model"] for line in loaded} == {"piper en_US-joe-medium", "whisper tiny.en"}
        # Listening came first: calls are answered while the models load.
        assert agent.lines.index(listening) < agent.lines.index(loaded[0])
    finally:
        assert await agent.stop() == 0


async def test_serve_rejects_a_bad_brain_script(tmp_path: Path) -> None:
    script = tmp_path / "brain.toml"
    script.write_text('greeting = "Hi."\n')
    profile = tmp_path / "profile.toml"
    profile.write_text(f'[local]\nbrain = "{script}"\n')
    agent = AgentProcess(free_port(), ["--config", str(profile)])
    with pytest.raises(AssertionError, match="'fallback' must be a non-empty string"):
        await agent.start(timeout_s=20)
    assert await agent.stop() == 2
