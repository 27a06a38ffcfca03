"""MCP servers as tool providers: connect once per process, list their tools, proxy calls.

Each configured server gets one long-lived connection (a stdio subprocess, or a streamable-HTTP
session) shared by every call. The MCP client's transports are anyio context managers that must
be entered and left by the same task, so a dedicated owner task holds the connection open and
calls use it from their own tasks. The tool list is fetched on first use (the first call) and
kept for the life of the connection; a connection that failed is rebuilt at the next use.

An MCP tool is offered to the model like any other: same argument validation, time limit and
output cap. Its ``isError`` results become ``Error: …`` outputs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import structlog

from agent.config import McpServerSettings
from agent.tools.registry import TOOL_NAME, Tool, ToolError

if TYPE_CHECKING:
    from mcp import Client
    from mcp.client.stdio import StdioServerParameters

log = structlog.get_logger("mcp")


class McpUnavailable(Exception):
    """The server could not be reached or listed; its tools are left out of the call."""


class McpServer:
    """One ``[[tools.mcp]]`` entry, shared by every call of the process."""

    def __init__(
        self, settings: McpServerSettings, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.name = settings.name
        self._environ = os.environ if environ is None else environ
        self._client: Client | None = None
        self._owner: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._lock = asyncio.Lock()
        self._tools: list[Tool] | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def _target(self) -> StdioServerParameters | str:
        # Imported here: the mcp package takes ~0.6 s to import, and most profiles have no
        # MCP server.
        from mcp.client.stdio import StdioServerParameters

        if self.settings.url:
            return self.settings.url
        command, *args = self.settings.command
        env = {k: self._environ[k] for k in self.settings.env_passthrough if k in self._environ}
        return StdioServerParameters(command=command, args=args, env=env)

    # -- connection --------------------------------------------------------------------------
    async def _connected(self) -> Client:
        async with self._lock:
            if self._client is not None and self._owner is not None and not self._owner.done():
                return self._client
            await self._drop()
            self._stop = asyncio.Event()
            ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
            self._owner = asyncio.create_task(self._own(ready), name=f"mcp-{self.name}")
            try:
                client = await asyncio.wait_for(
                    asyncio.shield(ready), self.settings.connect_timeout_s
                )
            except TimeoutError:
                await self._drop()
                raise McpUnavailable(
                    f"no answer within {self.settings.connect_timeout_s:g} s"
                ) from None
            except Exception as exc:
                await self._drop()
                raise McpUnavailable(f"{type(exc).__name__}: {exc}") from None
            self._client = client
            return client

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        from mcp import Client

        try:
            async with Client(self._target(), cache=None) as client:
                if not ready.done():
                    ready.set_result(client)
                await self._stop.wait()
        except Exception as exc:
            if not ready.done():
                ready.set_exception(exc)
            else:
                log.warning("mcp_server_lost", server=self.name, error=str(exc))
        finally:
            self._client = None
            self._tools = None

    async def _drop(self) -> None:
        owner, self._owner = self._owner, None
        self._client = None
        if owner is None:
            return
        self._stop.set()
        try:
            await asyncio.wait_for(owner, 5.0)
        except (TimeoutError, asyncio.CancelledError):
            owner.cancel()
            with contextlib.suppress(BaseException):
                await owner
        except Exception as exc:
            log.debug("mcp_close_failed", server=self.name, error=str(exc))

    async def close(self) -> None:
        async with self._lock:
            await self._drop()
            self._tools = None

    # -- tools -------------------------------------------------------------------------------
    async def tools(self) -> list[Tool]:
        """This server's tools (listed once per connection); McpUnavailable if unreachable."""
        if self._tools is not None and self._client is not None:
            return self._tools
        client = await self._connected()
        try:
            listing = await asyncio.wait_for(client.list_tools(), self.settings.connect_timeout_s)
        except Exception as exc:
            await self.close()
            raise McpUnavailable(f"listing tools failed: {type(exc).__name__}: {exc}") from None
        tools: list[Tool] = []
        for remote in listing.tools:
            tool = self._proxy(remote.name, remote.description or remote.title or remote.name,
                               remote.input_schema)  # fmt: skip
            if tool is not None:
                tools.append(tool)
        self._tools = tools
        log.info("mcp_tools_listed", server=self.name, tools=[t.name for t in tools])
        return tools

    def _proxy(self, remote: str, description: str, schema: Any) -> Tool | None:
        include = self.settings.include
        if include and remote not in include:
            return None
        name = f"{self.settings.prefix}{remote}"
        if not TOOL_NAME.fullmatch(name) or not isinstance(schema, dict):
            log.warning("mcp_tool_skipped", server=self.name, tool=remote, reason="unusable")
            return None
        if schema.get("type") != "object":
            log.warning("mcp_tool_skipped", server=self.name, tool=remote, reason="schema")
            return None

        async def handler(args: dict[str, Any]) -> str:
            return await self.call(remote, args)

        return Tool(name, description, schema, handler, source=f"mcp:{self.name}")

    async def call(self, remote: str, arguments: dict[str, Any]) -> str:
        """Call tool ``remote`` on the server; its text output, or ToolError."""
        try:
            client = await self._connected()
        except McpUnavailable as exc:
            raise ToolError(f"the {self.name} service is unavailable ({exc})") from None
        try:
            result = await client.call_tool(remote, arguments)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # A broken pipe or session: rebuild the connection on the next use.
            closing = asyncio.create_task(self.close())
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)
            raise ToolError(
                f"the {self.name} service failed: {type(exc).__name__}: {exc}"
            ) from None
        text = "\n".join(
            str(getattr(part, "text", "")) for part in result.content if hasattr(part, "text")
        )
        if result.is_error:
            raise ToolError(text or f"{remote} reported an error")
        if not text and result.structured_content is not None:
            return json.dumps(result.structured_content, ensure_ascii=False, default=str)
        return text
