"""The tools of this process: custom Python tools and MCP servers, loaded once at start-up."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import structlog

from agent.config import ToolSettings
from agent.tools.custom import load_custom_tool
from agent.tools.mcp_servers import McpServer, McpUnavailable
from agent.tools.registry import Tool

log = structlog.get_logger("tools")


class ToolCatalog:
    """Custom tools (imported now: a bad one is a ConfigError) and MCP servers (lazy)."""

    def __init__(self, settings: ToolSettings, environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.custom: list[Tool] = [
            load_custom_tool(spec, settings.python_path, f"tools.custom[{index}]")
            for index, spec in enumerate(settings.custom)
        ]
        self.mcp = [McpServer(server, environ) for server in settings.mcp]

    async def tools(self) -> list[Tool]:
        """Custom tools, then every reachable MCP server's (an unreachable one is left out)."""
        found = list(self.custom)
        listings = await asyncio.gather(
            *(server.tools() for server in self.mcp), return_exceptions=True
        )
        for server, listing in zip(self.mcp, listings, strict=True):
            if isinstance(listing, McpUnavailable):
                log.warning("mcp_server_unavailable", server=server.name, error=str(listing))
            elif isinstance(listing, BaseException):
                log.error("mcp_server_failed", server=server.name, error=repr(listing))
            else:
                found.extend(listing)
        return found

    async def close(self) -> None:
        await asyncio.gather(*(server.close() for server in self.mcp), return_exceptions=True)
