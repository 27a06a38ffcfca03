"""Function calling: built-in call control, custom Python tools and MCP servers.

``registry`` (what a tool is), ``schema`` (argument validation), ``protocol`` (the realtime
events, no I/O), ``runner`` (asyncio tasks, limits, logging), ``builtins`` and ``control``
(end, transfer, DTMF), ``dtmf`` (the caller's keypad), ``custom`` and ``mcp_servers`` (tool
providers), ``catalog`` (the process's tools) and ``session`` (one call's tools).
"""
