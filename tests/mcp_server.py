"""A small MCP server for the tests: ``python tests/mcp_server.py [--http PORT]``.

Its tools cover the cases the agent must handle: a plain answer, a tool that raises (an MCP
error result), and one slow enough to hit a time limit.
"""

from __future__ import annotations

import asyncio
import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("test-crm")


@server.tool()
def account_balance(account: str) -> str:
    """The balance of a customer account."""
    return f"Account {account} has a balance of 42.50 EUR."


@server.tool()
def close_account(account: str) -> str:
    """Close a customer account (always refused here)."""
    raise ValueError(f"account {account} cannot be closed by phone")


@server.tool()
async def slow_report(seconds: float) -> str:
    """A report that takes a while to produce."""
    await asyncio.sleep(seconds)
    return "report ready"


if __name__ == "__main__":
    # "--http PORT" serves streamable HTTP on 127.0.0.1:PORT/mcp instead of stdio.
    if len(sys.argv) == 3 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
