"""Work GPT-Live delegates to the call (client delegation), done over Responses WebSocket mode.

A delegation carries no task text: the request is built from the conversation so far and the
caller's words in the turn (the bridge's ``Delegate``). The delegation model (``[live]
delegation_model``) gets the call's function tools; every call it makes runs through the
call's own tools (same validation, time limits and redaction as the Realtime API's function
calls) and its output goes into the next round, until the model answers in words, which go
back to GPT-Live to be said. One WebSocket per call, opened on the first delegation and
reused; delegations run one at a time on it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agent.bridge.actions import Delegate
from agent.live.responses_wire import (
    ResponseReader,
    call_items,
    history_items,
    response_create,
)
from agent.realtime.connection import RealtimeConnectError, RealtimeConnection
from agent.realtime.dialect import Dialect
from agent.realtime.endpoint import DelegationEndpoint, RealtimeEndpoint
from agent.realtime.transport import RealtimeTransport
from agent.tools.session import CallTools

#: Model rounds per delegation: calls, their outputs, and the answer.
MAX_ROUNDS = 4
#: Said when the work could not be done (the model paraphrases it).
FAILED = "That could not be done just now. Apologise and offer something else."


class DelegationFailed(Exception):
    """The delegation model could not be reached or answered with an error."""


class DelegationWorker:
    """Does one call's delegated work."""

    def __init__(
        self,
        endpoint: DelegationEndpoint,
        instructions: str,
        tools: CallTools,
        log: Any,
        *,
        round_timeout_s: float,
        connect_timeout_s: float,
    ) -> None:
        self.endpoint = endpoint
        self.instructions = instructions
        self._tools = tools
        self._log = log
        self._round_timeout_s = round_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._conn: RealtimeTransport | None = None
        self._lock = asyncio.Lock()

    async def run(self, work: Delegate, declarations: list[dict[str, Any]]) -> str:
        """What GPT-Live should say about ``work``, once it is done (or could not be)."""
        async with self._lock:
            try:
                return await self._run(work, declarations)
            except DelegationFailed as exc:
                self._log.warning(
                    "live_delegation_failed", delegation_id=work.delegation_id, error=str(exc)
                )
                await self._drop()
                return FAILED

    async def _run(self, work: Delegate, declarations: list[dict[str, Any]]) -> str:
        items = history_items(work.history, work.request)
        reader = ResponseReader()
        for _ in range(MAX_ROUNDS):
            reader = await self._ask(
                response_create(self.endpoint.model, self.instructions, items, declarations)
            )
            if reader.error is not None:
                raise DelegationFailed(reader.error)
            if not reader.calls:
                return reader.text
            for call in reader.calls:
                result = await self._tools.run(
                    call.name, call.arguments, call_id=call.call_id, origin="delegation"
                )
                items.extend(call_items(call, result.output))
        # Still calling tools after every round: what was said so far is all there is.
        return reader.text

    async def _ask(self, event: dict[str, Any]) -> ResponseReader:
        conn = await self._connection()
        reader = ResponseReader()
        try:
            await conn.send(_dumps(event))
            await asyncio.wait_for(self._read(conn, reader), self._round_timeout_s)
        except TimeoutError:
            raise DelegationFailed(f"no answer within {self._round_timeout_s:g} s") from None
        except Exception as exc:
            raise DelegationFailed(f"{type(exc).__name__}: {exc}") from None
        return reader

    @staticmethod
    async def _read(conn: RealtimeTransport, reader: ResponseReader) -> None:
        async for message in conn.messages():
            if reader.feed(message):
                return
        raise DelegationFailed(f"the connection closed: {conn.close_reason}")

    async def _connection(self) -> RealtimeTransport:
        if self._conn is None:
            target = RealtimeEndpoint(
                "delegation", self.endpoint.url, Dialect.GA, self.endpoint.headers
            )
            try:
                self._conn = await RealtimeConnection.open(target, self._connect_timeout_s)
            except RealtimeConnectError as exc:
                raise DelegationFailed(str(exc)) from None
        return self._conn

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    async def close(self) -> None:
        """The call is over."""
        await self._drop()


def _dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"))
