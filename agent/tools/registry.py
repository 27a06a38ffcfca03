"""What a tool is to the agent, and the set of tools one call offers the model.

Every kind of tool (built-in, custom Python, MCP) ends up as a :class:`Tool`: a name, what the
model reads about it, its argument schema, and an async handler taking the already-validated
arguments. The runner applies the same rules to all of them (validation, time limit, output
cap, redaction), so a new kind of tool only has to produce ``Tool`` objects.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: What the realtime API accepts as a function name.
TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class ToolError(Exception):
    """A failure the model should read and can act on (its text becomes the tool's output)."""


@dataclass(frozen=True)
class ToolResult:
    """A handler's output; ``respond=False`` asks the model for no reply (the call is ending)."""

    output: str
    respond: bool = True


ToolHandler = Callable[[dict[str, Any]], Awaitable[str | ToolResult]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    handler: ToolHandler = field(repr=False)
    #: "builtin", "custom" or "mcp:<server>": for logs and transcripts.
    source: str = "builtin"
    #: Default time limit; ``[tools.timeouts]`` overrides it per name.
    timeout_s: float | None = None

    def declaration(self) -> dict[str, Any]:
        """The session's function tool entry (the same shape in the GA and beta dialects)."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": self.parameters,
        }


class ToolSet:
    """The tools of one call, by name, in the order they were added (first name wins)."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self.skipped: list[str] = []
        for tool in tools:
            self.add(tool)

    def add(self, tool: Tool) -> bool:
        """Add ``tool``; False (and noted in ``skipped``) when its name is taken or invalid."""
        if tool.name in self._tools or not TOOL_NAME.fullmatch(tool.name):
            self.skipped.append(f"{tool.source}:{tool.name}")
            return False
        self._tools[tool.name] = tool
        return True

    def get(self, name: str) -> Tool | None:
        return self._tools.get(name)

    def __len__(self) -> int:
        return len(self._tools)

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    @property
    def names(self) -> list[str]:
        return list(self._tools)

    def declarations(self) -> list[dict[str, Any]]:
        return [tool.declaration() for tool in self._tools.values()]


def redacted(arguments: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """A copy of ``arguments`` safe to log: the named fields' values are masked, at any depth."""
    hidden = set(fields)

    def mask(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: "***" if k in hidden else mask(v) for k, v in value.items()}
        if isinstance(value, list):
            return [mask(v) for v in value]
        return value

    masked: dict[str, Any] = mask(dict(arguments))
    return masked
