"""Server-side MCP tools (``[[tools.server_mcp]]``): the session's ``type: "mcp"`` tools.

The Realtime model calls these MCP servers itself; the agent only declares them (with their
headers, read from the environment so tokens never sit in the profile) and answers approval
requests, since nobody on a phone line can.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agent.config import ConfigError, ServerMcpSettings


def server_mcp_tools(
    servers: tuple[ServerMcpSettings, ...], environ: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The ``tools`` entries of ``servers``; ConfigError names every header variable unset."""
    missing = [
        variable
        for server in servers
        for variable in server.headers_env.values()
        if not environ.get(variable)
    ]
    if missing:
        raise ConfigError(
            "tools.server_mcp: environment variable(s) not set: " + ", ".join(sorted(missing))
        )
    return [_tool(server, environ) for server in servers]


def _tool(server: ServerMcpSettings, environ: Mapping[str, str]) -> dict[str, Any]:
    tool: dict[str, Any] = {
        "type": "mcp",
        "server_label": server.server_label,
        "server_url": server.server_url,
        "require_approval": server.require_approval,
    }
    if server.description:
        tool["server_description"] = server.description
    if server.headers_env:
        tool["headers"] = {
            header: environ[variable] for header, variable in server.headers_env.items()
        }
    if server.allowed_tools:
        tool["allowed_tools"] = list(server.allowed_tools)
    return tool


def approved(servers: tuple[ServerMcpSettings, ...]) -> dict[str, tuple[str, ...]]:
    """Per server label, the tools whose approval requests the agent grants."""
    return {server.server_label: server.approve for server in servers}
