"""One call's tools, as the call's shell sees them.

:class:`CallTools` is the tools' whole surface for :class:`~agent.call.CallSession`: the tool
declarations for the session's configuration, running a tool the bridge asked for (the
model's function call, or a DTMF key's action), and ``close`` when the call is over. What
the model is told of a result is the bridge's decision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog

from agent.config import ToolSettings
from agent.observe.transcript import RecordWriter
from agent.tools.builtins import CallControl, builtin_tools, local_tools
from agent.tools.catalog import ToolCatalog
from agent.tools.registry import ToolResult, ToolSet
from agent.tools.runner import ToolRunner


class CallTools:
    """Function calling and DTMF actions for one call.

    ``catalog`` holds the process's custom and MCP tools; without one the call offers only
    the built-ins the profile enables. DTMF actions run the built-ins directly, even those
    the model is not offered. ``on_tool_call`` hears each call's outcome (for metrics).
    """

    def __init__(
        self,
        settings: ToolSettings,
        control: CallControl,
        records: RecordWriter,
        log: Any = None,
        catalog: ToolCatalog | None = None,
        on_tool_call: Callable[[str], None] | None = None,
    ) -> None:
        self.settings = settings
        self.log = log or structlog.get_logger("tools")
        self.catalog = catalog
        self.toolset = ToolSet(builtin_tools(settings, control))
        self._local = ToolSet(local_tools(settings, control).values())
        self._model_runner = ToolRunner(self.toolset, settings, records, self.log, on_tool_call)
        self._key_runner = ToolRunner(self._local, settings, records, self.log, on_tool_call)
        self._listed = False

    async def declarations(self) -> list[dict[str, Any]]:
        """The function tools for the session (the catalog is asked once per call)."""
        if self.catalog is not None and not self._listed:
            self._listed = True
            for tool in await self.catalog.tools():
                self.toolset.add(tool)
        if self.toolset.skipped:
            self.log.warning(
                "tools_skipped", reason="name taken or invalid", tools=self.toolset.skipped
            )
        return self.toolset.declarations()

    async def run(
        self, name: str, arguments: str, *, call_id: str | None, origin: str
    ) -> ToolResult:
        """Run ``name``: a model's function call (``origin`` model, or delegation when GPT-Live
        delegated the work), or a key's action (``origin`` dtmf:<digit>)."""
        runner = self._model_runner if origin in ("model", "delegation") else self._key_runner
        return await runner.invoke(name, arguments, call_id=call_id, origin=origin)

    def spawn(self, work: Any, name: str) -> None:
        """Run ``work`` (a tool run and what follows it) as a task of this call."""
        self._model_runner.spawn(work, name)

    async def close(self) -> None:
        """Cancel what still runs (the call is over) and wait for it to stop."""
        await self._model_runner.close()
        await self._key_runner.close()
