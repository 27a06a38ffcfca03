"""The built-in tools' hold on a real SIP call (:class:`CallControl` over a ``SipCall``)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from agent.observe.outcome import AGENT, TRANSFER, CallOutcome
from agent.sip.call import SipCall, SipCommandError
from agent.tools.builtins import TransferOutcome
from agent.tools.registry import ToolError

#: Poll interval while waiting for the playout to drain: one media frame.
_FRAME_S = 0.02
#: After the last frame left the playout buffer, PJSIP still encodes and sends it.
_LAST_FRAME_S = 0.04


class SipCallControl:
    """Ends, transfers and sends DTMF on ``sip``; ``speaking`` says if agent audio is pending.

    ``outcome`` is told why the call ends when a tool ends it.
    """

    def __init__(
        self, sip: SipCall, speaking: Callable[[], bool], outcome: CallOutcome | None = None
    ) -> None:
        self.sip = sip
        self._speaking = speaking
        self.outcome = outcome or CallOutcome()
        self._transfer: asyncio.Future[TransferOutcome] | None = None
        self._transfer_uri = ""

    async def wait_until_quiet(self, timeout_s: float) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while self._speaking() and not self.sip.disconnected:
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(_FRAME_S)
        await asyncio.sleep(_LAST_FRAME_S)
        return True

    def hang_up(self, reason: str = "") -> None:
        self.outcome.decide(AGENT, reason or "the agent hung up")
        self.sip.end()

    async def transfer(self, uri: str) -> TransferOutcome:
        if self._transfer is not None:
            raise ToolError("a transfer is already in progress")
        outcome: asyncio.Future[TransferOutcome] = asyncio.get_running_loop().create_future()
        self._transfer = outcome
        self._transfer_uri = uri
        try:
            try:
                self.sip.transfer(uri)
            except SipCommandError as exc:
                raise ToolError(str(exc)) from None
            return await outcome
        finally:
            self._transfer = None

    def on_transfer_status(self, code: int, reason: str, final: bool) -> None:
        """REFER progress from the SIP side; a final 2xx means the caller is connected elsewhere."""
        if not final:
            return
        result = TransferOutcome(code, reason)
        if result.ok:
            self.outcome.decide(TRANSFER, f"transferred to {self._transfer_uri}")
            self.hang_up()
        pending = self._transfer
        if pending is not None and not pending.done():
            pending.set_result(result)

    def send_dtmf(self, digits: str) -> None:
        try:
            self.sip.send_dtmf(digits)
        except SipCommandError as exc:
            raise ToolError(str(exc)) from None
