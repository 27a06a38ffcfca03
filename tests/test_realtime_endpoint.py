"""Provider → URL, headers and dialect, asserted exactly; keys never leak into descriptions."""

from __future__ import annotations

import dataclasses

import pytest

from agent.config import ConfigError, RealtimeSettings, Secrets, Settings
from agent.realtime.dialect import Dialect
from agent.realtime.endpoint import choose_provider, resolve_endpoint

KEY = "sk-secret-key-0123456789"


def _settings(realtime: RealtimeSettings | None = None, **secrets: str) -> Settings:
    return dataclasses.replace(
        Settings(), realtime=realtime or RealtimeSettings(), secrets=Secrets(**secrets)
    )


def test_openai_ga() -> None:
    endpoint = resolve_endpoint(_settings(openai_api_key=KEY))
    assert endpoint.provider == "openai"
    assert endpoint.url == "wss://api.openai.com/v1/realtime?model=gpt-realtime-2.1"
    assert endpoint.headers == {"Authorization": f"Bearer {KEY}"}
    assert endpoint.dialect is Dialect.GA
    assert KEY not in endpoint.describe() and KEY not in repr(endpoint)


def test_azure_ga_v1_path() -> None:
    endpoint = resolve_endpoint(
        _settings(
            azure_api_key=KEY,
            azure_endpoint="https://contoso.openai.azure.com/",
            azure_deployment="my-realtime",
        )
    )
    assert endpoint.url == "wss://contoso.openai.azure.com/openai/v1/realtime?model=my-realtime"
    assert endpoint.headers == {"api-key": KEY}
    assert endpoint.dialect is Dialect.GA


def test_azure_preview_is_beta_dialect() -> None:
    endpoint = resolve_endpoint(
        _settings(
            azure_api_key=KEY,
            azure_endpoint="https://contoso.openai.azure.com",
            azure_deployment="gpt-realtime",
            azure_api_version="2025-04-01-preview",
        )
    )
    assert endpoint.url == (
        "wss://contoso.openai.azure.com/openai/realtime"
        "?api-version=2025-04-01-preview&deployment=gpt-realtime"
    )
    assert endpoint.headers == {"api-key": KEY}
    assert endpoint.dialect is Dialect.BETA


def test_custom_url_and_dialect() -> None:
    realtime = RealtimeSettings(provider="custom", url="ws://10.0.0.5:9000/rt", dialect="beta")
    endpoint = resolve_endpoint(_settings(realtime, realtime_api_key=KEY))
    assert endpoint.url == "ws://10.0.0.5:9000/rt"
    assert endpoint.dialect is Dialect.BETA
    assert endpoint.headers == {"Authorization": f"Bearer {KEY}"}


def test_no_credentials_means_local_backend() -> None:
    assert choose_provider(_settings()) == "local"
    endpoint = resolve_endpoint(_settings(), local_url="ws://127.0.0.1:5555/v1/realtime")
    assert endpoint.provider == "local"
    assert endpoint.url == "ws://127.0.0.1:5555/v1/realtime"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (_settings(RealtimeSettings(provider="openai")), "OPENAI_API_KEY is not set"),
        (_settings(RealtimeSettings(provider="azure")), "AZURE_OPENAI_API_KEY"),
        (_settings(RealtimeSettings(provider="custom")), "realtime.url is empty"),
        (
            _settings(RealtimeSettings(provider="custom", url="http://x/rt")),
            "is not a ws:// or wss:// URL",
        ),
    ],
)
def test_incomplete_provider_settings_are_config_errors(settings: Settings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_endpoint(settings)
