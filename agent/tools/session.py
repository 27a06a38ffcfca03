"""One call's tools, as the call session sees them.

:class:`CallTools` is the whole surface :class:`~agent.call.CallSession` needs: the tool
declarations for ``session.update``, a place to feed every server event, the caller's key
presses, and ``close`` when the call is over.
"""

from __future__ import annotations

import asyncio
from typing import Any

import structlog

from agent.config import ToolSettings
from agent.observe.transcript import Transcript
from agent.realtime.dialect import Dialect
from agent.tools.builtins import CallControl, builtin_tools, local_tools
from agent.tools.catalog import ToolCatalog
from agent.tools.dtmf import DtmfAction, DtmfCollector, pressed_text
from agent.tools.protocol import ToolProtocol
from agent.tools.registry import ToolSet
from agent.tools.runner import Sender, ToolRunner


class CallTools:
    """Function calling and caller DTMF for one call.

    ``catalog`` holds the process's custom and MCP tools; without one the call offers only
    the built-ins the profile enables.
    """

    def __init__(
        self,
        settings: ToolSettings,
        control: CallControl,
        dialect: Dialect,
        transcript: Transcript,
        log: Any = None,
        catalog: ToolCatalog | None = None,
    ) -> None:
        self.settings = settings
        self.control = control
        self.transcript = transcript
        self.log = log or structlog.get_logger("tools")
        self.catalog = catalog
        self.protocol = ToolProtocol(dialect)
        self.toolset = ToolSet(builtin_tools(settings, control))
        self._local = ToolSet(local_tools(settings, control).values())
        self.dtmf = DtmfCollector(
            settings.dtmf_actions, settings.dtmf_batch_ms / 1000, settings.dtmf_to_model
        )
        self.runner: ToolRunner | None = None
        self._actions: ToolRunner | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._listed = False
        self._earlier: list[ToolRunner] = []

    async def declarations(self) -> list[dict[str, Any]]:
        """The function tools for ``session.update`` (the catalog is asked once per call)."""
        if self.catalog is not None and not self._listed:
            self._listed = True
            for tool in await self.catalog.tools():
                self.toolset.add(tool)
        if self.toolset.skipped:
            self.log.warning(
                "tools_skipped", reason="name taken or invalid", tools=self.toolset.skipped
            )
        return self.toolset.declarations()

    def start(self, send: Sender) -> None:
        """A session is ready: tool outputs and notes go out through ``send`` from now on.

        After a reconnection this is a new conversation with its own bookkeeping. Tools still
        running for the old one finish (a payment made or a hang-up due still happens), but
        their outputs go to the old, closed session: the new one never issued those call ids.
        """
        self._earlier += [r for r in (self.runner, self._actions) if r is not None]
        self.protocol = ToolProtocol(self.protocol.dialect)
        self.runner = ToolRunner(
            self.toolset, self.protocol, send, self.settings, self.transcript, self.log
        )
        # DTMF actions run the built-ins directly, even those the model is not offered.
        self._actions = ToolRunner(
            self._local, self.protocol, send, self.settings, self.transcript, self.log
        )

    async def server_event(self, event: dict[str, Any]) -> None:
        if self.runner is not None:
            await self.runner.server_event(event)

    # -- caller DTMF (loop thread, from the SIP callback) -----------------------------------
    def caller_dtmf(self, digit: str, method: str) -> None:
        self.log.info("dtmf_received", digit=digit, method=method)
        self.transcript.event("dtmf", digit=digit, method=method)
        if self.runner is None:
            return
        loop = asyncio.get_running_loop()
        step = self.dtmf.press(digit, loop.time())
        if step.flush:
            self._tell_model(step.flush)
        if step.action is not None:
            self.runner.spawn(self._act(step.action), f"dtmf-{step.action.tool}")
        self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = self.dtmf.next_deadline
        if deadline is not None:
            self._timer = loop.call_at(deadline, self._batch_due)

    def _batch_due(self) -> None:
        self._timer = None
        digits = self.dtmf.due(asyncio.get_running_loop().time())
        if digits:
            self._tell_model(digits)

    def _tell_model(self, digits: str) -> None:
        assert self.runner is not None
        self.runner.spawn(self.runner.tell(pressed_text(digits)), "dtmf-to-model")

    async def _act(self, action: DtmfAction) -> None:
        assert self._actions is not None and self.runner is not None
        result = await self._actions.invoke(
            action.tool, action.arguments, origin=f"dtmf:{action.digit}"
        )
        if result.output.startswith("Error:"):
            # The caller asked for this with a key, not the model: let the model explain.
            note = f"The caller pressed {action.digit} for {action.tool}; {result.output}"
            await self.runner.tell(note, role="system")

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for runner in (*self._earlier, self.runner, self._actions):
            if runner is not None:
                await runner.close()
