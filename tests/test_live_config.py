"""GPT-Live in the configuration: the endpoint per provider, the warnings for a model sent to
the other API or settings a protocol ignores, and the server-side MCP tools' checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.config import ConfigError, load_settings
from agent.realtime.endpoint import configuration_warnings, resolve_endpoint
from agent.tools.server_mcp import approved, server_mcp_tools

KEY = "sk-secret-key-0123456789"
LOCAL = "ws://127.0.0.1:8765/v1/realtime"


def _load(tmp_path: Path, text: str, **environ: str) -> object:
    config = tmp_path / "agent.toml"
    config.write_text(text)
    return load_settings(config, environ=environ)


def test_live_on_the_local_backend_uses_its_live_and_responses_paths(tmp_path: Path) -> None:
    settings = load_settings(None, environ={}, overrides={"realtime": {"protocol": "live"}})
    endpoint = resolve_endpoint(settings, LOCAL)
    assert (endpoint.provider, endpoint.protocol) == ("local", "live")
    assert endpoint.url == "ws://127.0.0.1:8765/v1/live/sessions"
    assert endpoint.delegation is not None
    assert endpoint.delegation.url == "ws://127.0.0.1:8765/v1/responses"
    assert endpoint.delegation.model == "gpt-5.6-terra"
    assert "GPT-Live" in endpoint.describe()
    assert configuration_warnings(settings, endpoint) == []


def test_live_on_openai_carries_the_key_to_both_sockets_and_no_query() -> None:
    settings = load_settings(
        None, environ={"OPENAI_API_KEY": KEY}, overrides={"realtime": {"protocol": "live"}}
    )
    endpoint = resolve_endpoint(settings)
    assert endpoint.url == "wss://api.openai.com/v1/live/sessions"  # the model is in session.start
    assert endpoint.headers == {"Authorization": f"Bearer {KEY}"}
    assert endpoint.delegation is not None
    assert endpoint.delegation.url == "wss://api.openai.com/v1/responses"
    assert endpoint.delegation.headers == endpoint.headers
    assert KEY not in endpoint.describe() and KEY not in repr(endpoint)


def test_live_on_azure_uses_the_configured_path() -> None:
    environ = {
        "AZURE_OPENAI_API_KEY": KEY,
        "AZURE_OPENAI_ENDPOINT": "https://contoso.openai.azure.com/",
    }
    settings = load_settings(
        None,
        environ=environ,
        overrides={"realtime": {"protocol": "live"}, "live": {"azure_path": "/openai/v1/live"}},
    )
    endpoint = resolve_endpoint(settings)
    assert endpoint.url == "wss://contoso.openai.azure.com/openai/v1/live"
    assert endpoint.headers == {"api-key": KEY}
    assert endpoint.delegation is not None
    assert endpoint.delegation.url == "wss://contoso.openai.azure.com/openai/v1/responses"


def test_a_custom_live_url_with_a_query_is_refused_and_delegation_can_be_elsewhere() -> None:
    live = {"protocol": "live", "provider": "custom", "url": "wss://live.example/v1/live?model=x"}
    with pytest.raises(ConfigError, match="no query"):
        resolve_endpoint(load_settings(None, environ={}, overrides={"realtime": live}))
    settings = load_settings(
        None,
        environ={},
        overrides={
            "realtime": {**live, "url": "wss://live.example/v1/live/sessions"},
            "live": {"delegation_url": "wss://tools.example/v1/responses"},
        },
    )
    endpoint = resolve_endpoint(settings)
    assert endpoint.url == "wss://live.example/v1/live/sessions"
    assert endpoint.delegation is not None
    assert endpoint.delegation.url == "wss://tools.example/v1/responses"


def test_a_model_of_the_other_api_is_warned_about(tmp_path: Path) -> None:
    on_realtime = load_settings(None, environ={}, overrides={"realtime": {"model": "gpt-live-1"}})
    warnings = configuration_warnings(on_realtime, resolve_endpoint(on_realtime, LOCAL))
    assert (
        len(warnings) == 1
        and "GPT-Live model, which the Realtime API does not serve" in warnings[0]
    )
    on_live = load_settings(
        None,
        environ={},
        overrides={"realtime": {"protocol": "live"}, "live": {"model": "gpt-realtime-2.1"}},
    )
    warnings = configuration_warnings(on_live, resolve_endpoint(on_live, LOCAL))
    assert len(warnings) == 1 and "realtime.protocol is 'live'" in warnings[0]


def test_settings_live_has_no_place_for_are_named(tmp_path: Path) -> None:
    settings = load_settings(
        None,
        environ={},
        overrides={
            "realtime": {"protocol": "live"},
            "agent": {"speed": 1.2, "reasoning_effort": "low"},
        },
    )
    warnings = configuration_warnings(settings, resolve_endpoint(settings, LOCAL))
    assert warnings == [
        "GPT-Live has no speed: the setting is ignored",
        "GPT-Live has no reasoning_effort: the setting is ignored",
    ]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"realtime": {"protocol": "livestream"}}, "realtime.protocol"),
        ({"realtime": {"max_session_s": 60}}, "max_session_s"),
        ({"agent": {"speed": 2.0}}, "agent.speed"),
        ({"agent": {"truncation": "sometimes"}}, "agent.truncation"),
    ],
)
def test_bad_live_and_session_settings_are_config_errors(
    overrides: dict[str, dict[str, object]], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(None, environ={}, overrides=overrides)


SERVER_MCP = """
[[tools.server_mcp]]
server_label = "orders"
server_url = "https://mcp.example.com/mcp"
description = "Order status."
headers_env = { Authorization = "ORDERS_MCP_TOKEN" }
require_approval = "always"
approve = ["lookup_order"]
allowed_tools = ["lookup_order", "cancel_order"]
"""


def test_a_server_mcp_tool_takes_its_token_from_the_environment(tmp_path: Path) -> None:
    settings = _load(tmp_path, SERVER_MCP)
    servers = settings.tools.server_mcp  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="ORDERS_MCP_TOKEN"):
        server_mcp_tools(servers, {})
    (tool,) = server_mcp_tools(servers, {"ORDERS_MCP_TOKEN": "Bearer t0k"})
    assert tool == {
        "type": "mcp",
        "server_label": "orders",
        "server_url": "https://mcp.example.com/mcp",
        "require_approval": "always",
        "server_description": "Order status.",
        "headers": {"Authorization": "Bearer t0k"},
        "allowed_tools": ["lookup_order", "cancel_order"],
    }
    assert approved(servers) == {"orders": ("lookup_order",)}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("https://mcp.example.com/mcp", "http://mcp.example.com/mcp"), "server_url"),
        (('"always"', '"sometimes"'), "require_approval"),
        (('"orders"', '"two words"'), "server_label"),
        (('"ORDERS_MCP_TOKEN"', '"not-a-var"'), "headers_env"),
    ],
)
def test_bad_server_mcp_entries_are_config_errors(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, SERVER_MCP.replace(*change))
