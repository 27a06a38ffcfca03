from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import DEFAULT_CONFIG_PATH, ConfigError, Settings, load_settings


def _load(tmp_path: Path, text: str, environ: dict[str, str] | None = None) -> Settings:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return load_settings(path, environ=environ or {})


def test_shipped_default_profile_loads_and_matches_code_defaults() -> None:
    shipped = load_settings(DEFAULT_CONFIG_PATH, environ={})
    assert shipped.sip == Settings().sip
    assert shipped.realtime == Settings().realtime
    assert shipped.audio == Settings().audio
    assert shipped.agent.turn_detection == Settings().agent.turn_detection


def test_values_are_read_and_typed(tmp_path: Path) -> None:
    settings = _load(
        tmp_path,
        '[sip]\nport = 5070\ncodecs = ["PCMA"]\n[agent.turn_detection]\nthreshold = 1\n',
    )
    assert settings.sip.port == 5070
    assert settings.sip.codecs == ("PCMA",)
    assert settings.agent.turn_detection.threshold == 1.0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[sip]\nprot = 5060\n", "unknown key 'prot'"),
        ("[sipp]\n", "unknown key 'sipp'"),
        ('[sip]\nport = "5060"\n', "sip.port: expected an integer"),
        ("[sip]\nmax_calls = 5\n", "sip.max_calls: 5 is outside 1..4"),
        ('[sip]\ncodecs = ["opus"]\n', "'opus' is not supported"),
        ('[realtime]\nprovider = "gemini"\n', "realtime.provider: 'gemini' is not one of"),
        ("[sip\n", "invalid TOML"),
        ('[secrets]\nopenai_api_key = "sk-x"\n', "secrets belong in the environment"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(".", r"\.")):
        _load(tmp_path, text)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings(tmp_path / "nope.toml", environ={})


def test_secrets_come_from_the_environment_and_never_print(tmp_path: Path) -> None:
    settings = _load(tmp_path, "", {"OPENAI_API_KEY": "sk-test-0123456789"})
    assert settings.secrets.openai_api_key == "sk-test-0123456789"
    assert "sk-test" not in repr(settings)
    assert "sk-test" not in repr(settings.secrets)


def test_dotenv_file_fills_unset_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AZURE_OPENAI_ENDPOINT", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("AZURE_OPENAI_ENDPOINT=https://example.openai.azure.com\n")
    config = tmp_path / "agent.toml"
    config.write_text("")
    settings = load_settings(config, env_file=env_file)
    assert settings.secrets.azure_endpoint == "https://example.openai.azure.com"
