"""Choosing the local backend: by name, from the profile's ``[local]`` section."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings
from agent.local.backend import make_backend
from agent.local.silero_vad import silero_vad_factory
from agent.local.synthetic_voice import SyntheticResponder
from agent.local.vad import EnergyVad
from agent.local.voice import VoiceResponder, WhisperTranscriber


def test_the_synthetic_backend_loads_nothing() -> None:
    backend = make_backend("synthetic")
    assert backend.name == "synthetic"
    assert isinstance(backend.responder_factory(), SyntheticResponder)
    assert backend.vad_factory is EnergyVad
    assert backend.transcriber is None and backend.warm_up is None


def test_the_voice_backend_hears_transcribes_and_speaks() -> None:
    backend = make_backend("voice")
    assert backend.name == "voice"
    assert isinstance(backend.responder_factory(), VoiceResponder)
    assert backend.vad_factory is silero_vad_factory
    assert isinstance(backend.transcriber, WhisperTranscriber)
    assert backend.warm_up is not None


def test_unknown_backends_and_bad_scripts_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown local backend"):
        make_backend("cloud")
    with pytest.raises(ConfigError, match="not found"):
        make_backend("voice", str(tmp_path / "missing.toml"))


def test_profile_section() -> None:
    assert load_settings(environ={}).local.backend == "voice"
    settings = load_settings(environ={}, overrides={"local": {"backend": "synthetic"}})
    assert settings.local.backend == "synthetic"
    with pytest.raises(ConfigError, match=r"local\.backend"):
        load_settings(environ={}, overrides={"local": {"backend": "gpt"}})
