"""Models with an announced shutdown are named before they fail a live call."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from openai.types.realtime import AudioTranscription, RealtimeSessionCreateRequest

from agent.config import Settings, load_settings
from agent.realtime.endpoint import configuration_warnings, resolve_endpoint
from agent.realtime.models import (
    DEFAULT_REALTIME_MODEL,
    DEFAULT_TRANSCRIPTION_MODEL,
    DEPRECATED,
    deprecation,
)
from testbed.peers import AgentProcess, engine_args, free_port
from tests.test_realtime_connection import _cli


def _literal_names(model: type, field: str) -> set[str]:
    """The model names an ``openai`` pydantic model's field lists as literals."""
    names: set[str] = set()
    for arg in typing.get_args(model.model_fields[field].annotation):
        for inner in typing.get_args(arg):
            names |= {a for a in typing.get_args(inner) if isinstance(a, str)} | (
                {inner} if isinstance(inner, str) else set()
            )
    return names


def test_defaults_are_current_models_the_package_knows() -> None:
    assert deprecation(DEFAULT_REALTIME_MODEL) is None
    assert deprecation(DEFAULT_TRANSCRIPTION_MODEL) is None
    assert Settings().realtime.model == DEFAULT_REALTIME_MODEL == "gpt-realtime-2.1"
    assert DEFAULT_REALTIME_MODEL in _literal_names(RealtimeSessionCreateRequest, "model")
    assert DEFAULT_TRANSCRIPTION_MODEL in _literal_names(AudioTranscription, "model")


def test_every_deprecated_name_and_replacement_is_known_to_the_package() -> None:
    known = _literal_names(RealtimeSessionCreateRequest, "model") | _literal_names(
        AudioTranscription, "model"
    )
    for name, notice in DEPRECATED.items():
        assert name in known, name
        assert notice.replacement in known and deprecation(notice.replacement) is None


def test_deprecated_models_and_the_beta_dialect_are_warned_about(tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text(
        '[realtime]\nmodel = "gpt-realtime-mini"\n'
        '[agent]\ninput_transcription_model = "whisper-1"\n'
    )
    settings = load_settings(config, environ={})
    endpoint = resolve_endpoint(settings, "ws://127.0.0.1:1/v1/realtime")
    warnings = configuration_warnings(settings, endpoint)
    assert warnings == [
        "model 'gpt-realtime-mini' is deprecated and shuts down on 2027-01-20; "
        "use 'gpt-realtime-2.1-mini'",
        "model 'whisper-1' is deprecated and shuts down on 2027-02-26; use 'gpt-realtime-whisper'",
    ]
    beta = dataclasses.replace(
        settings, realtime=dataclasses.replace(settings.realtime, dialect="beta")
    )
    beta_warnings = configuration_warnings(beta, resolve_endpoint(beta, "ws://127.0.0.1:1/x"))
    assert "beta realtime dialect is deprecated" in beta_warnings[-1]
    assert configuration_warnings(Settings(), endpoint) == []


def test_azure_deployment_named_after_a_deprecated_model_is_warned_about() -> None:
    settings = load_settings(
        None,
        environ={
            "AZURE_OPENAI_API_KEY": "k" * 32,
            "AZURE_OPENAI_ENDPOINT": "https://example.openai.azure.com",
            "AZURE_OPENAI_DEPLOYMENT": "gpt-realtime",
        },
    )
    endpoint = resolve_endpoint(settings)
    assert endpoint.dialect.value == "ga"
    assert configuration_warnings(settings, endpoint) == [
        "model 'gpt-realtime' is deprecated and shuts down on 2027-01-20; use 'gpt-realtime-2.1'"
    ]


def test_check_prints_the_deprecation(tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text('[realtime]\nmodel = "gpt-realtime"\n')
    result = _cli("check", "--config", str(config))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (
        "warning:  model 'gpt-realtime' is deprecated and shuts down on 2027-01-20; "
        "use 'gpt-realtime-2.1'" in result.stdout
    )
    assert "warning:" not in _cli("check").stdout


async def test_serve_logs_the_deprecation_at_start(engine: str, tmp_path: Path) -> None:
    config = tmp_path / "old.toml"
    config.write_text('[realtime]\nmodel = "gpt-realtime"\n')
    agent = AgentProcess(
        free_port(),
        ["--config", str(config), "--realtime-url", "ws://127.0.0.1:9/v1/realtime",
         *engine_args(engine)],
    )  # fmt: skip
    await agent.start()
    try:
        warned = await agent.wait_for("config_deprecated", 5)
        assert "shuts down on 2027-01-20" in warned[0]["detail"]
    finally:
        assert await agent.stop() == 0
