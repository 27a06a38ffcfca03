"""Runs the model's function calls as asyncio tasks, under one set of rules for every tool.

The conversation does not wait for a tool: each call is its own task, and its output is sent
(``conversation.item.create`` + ``response.create`` when due, see :mod:`agent.tools.protocol`)
whenever it finishes. Whatever goes wrong inside a tool (unparseable or invalid arguments, an
unknown name, an exception, the time limit) becomes an ``Error: …`` output the model can read
and act on; it never reaches the call. Every call is logged and written to the transcript with
its name, duration and outcome, and its arguments with the profile's redactions applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from agent.config import ToolSettings
from agent.observe.transcript import Transcript
from agent.tools.protocol import FunctionCall, ToolProtocol
from agent.tools.registry import ToolError, ToolResult, ToolSet, redacted
from agent.tools.schema import validate

Sender = Callable[[dict[str, Any]], Awaitable[None]]


def cap_output(output: str, limit: int) -> str:
    """``output`` cut to ``limit`` characters, saying how much was cut."""
    if len(output) <= limit:
        return output
    return f"{output[:limit]}… [output cut: {len(output) - limit} more characters]"


class ToolRunner:
    """One call's tool execution: fed server events, it sends outputs through ``send``."""

    def __init__(
        self,
        tools: ToolSet,
        protocol: ToolProtocol,
        send: Sender,
        settings: ToolSettings,
        transcript: Transcript,
        log: Any = None,
    ) -> None:
        self.tools = tools
        self.protocol = protocol
        self._send = send
        self.settings = settings
        self.transcript = transcript
        self.log = log or structlog.get_logger("tools")
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0

    # -- model side --------------------------------------------------------------------------
    async def server_event(self, event: dict[str, Any]) -> None:
        step = self.protocol.server_event(event)
        await self._send_all(step.events)
        for call in step.calls:
            self.spawn(self._answer(call), f"tool-{call.name}-{call.call_id}")

    def spawn(self, work: Awaitable[None], name: str) -> None:
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, call: FunctionCall) -> None:
        result = await self.invoke(call.name, call.arguments, call_id=call.call_id)
        await self._send_all(
            self.protocol.output(call.call_id, result.output, respond=result.respond)
        )

    async def tell(self, text: str, *, role: str = "user", respond: bool = True) -> None:
        """Put a text message in the conversation (and ask for a reply when ``respond``)."""
        await self._send_all(self.protocol.note(text, role=role, respond=respond))

    async def _send_all(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            try:
                await self._send(event)
            except Exception as exc:
                # The session is closing (the call ended): nothing left to tell the model.
                self.log.debug("tool_event_not_sent", type=event["type"], error=str(exc))
                return

    # -- running one tool --------------------------------------------------------------------
    async def invoke(
        self,
        name: str,
        arguments: str | Mapping[str, Any],
        *,
        call_id: str | None = None,
        origin: str = "model",
    ) -> ToolResult:
        """Run tool ``name``; every failure comes back as an ``Error: …`` output."""
        self.calls += 1
        started = time.monotonic()
        args: dict[str, Any] = {}
        outcome = "ok"
        try:
            tool = self.tools.get(name)
            if tool is None:
                known = ", ".join(self.tools.names) or "none"
                raise ToolError(f"there is no tool named {name!r} (tools: {known})")
            args = _parse_arguments(arguments)
            problems = validate(tool.parameters, args)
            if problems:
                raise ToolError(f"invalid arguments for {name}: {'; '.join(problems)}")
            timeout = self.settings.timeouts.get(name, tool.timeout_s or self.settings.timeout_s)
            try:
                raw = await asyncio.wait_for(tool.handler(args), timeout)
            except TimeoutError:
                outcome = "timeout"
                raise ToolError(
                    f"{name} did not finish within {timeout:g} s and was abandoned"
                ) from None
            result = raw if isinstance(raw, ToolResult) else ToolResult(_as_text(raw))
        except ToolError as exc:
            outcome = "timeout" if outcome == "timeout" else "error"
            result = ToolResult(f"Error: {exc}")
        except asyncio.CancelledError:
            self._record(name, call_id, origin, args, "cancelled", started, None)
            raise
        except Exception as exc:
            self.log.exception("tool_raised", tool=name, call_id=call_id)
            outcome = "failed"
            result = ToolResult(f"Error: {name} failed: {type(exc).__name__}: {exc}")
        output = cap_output(result.output, self.settings.max_output_chars)
        error = output if outcome != "ok" else None
        self._record(name, call_id, origin, args, outcome, started, error, len(output))
        return ToolResult(output, result.respond)

    def _record(
        self,
        name: str,
        call_id: str | None,
        origin: str,
        args: dict[str, Any],
        outcome: str,
        started: float,
        error: str | None,
        output_chars: int = 0,
    ) -> None:
        fields: dict[str, Any] = {
            "tool": name,
            # Not "call_id": log lines of a call already carry the call's own id under it.
            "tool_call_id": call_id,
            "origin": origin,
            "arguments": redacted(args, self.settings.redact.get(name, ())),
            "outcome": outcome,
            "duration_ms": round((time.monotonic() - started) * 1000),
            "output_chars": output_chars,
        }
        if error is not None:
            fields["error"] = error
        log = self.log.info if outcome == "ok" else self.log.warning
        log("tool_call", **fields)
        self.transcript.event("tool_call", **fields)

    async def close(self) -> None:
        """Cancel tools still running (the call is over) and wait for them to stop."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def _parse_arguments(arguments: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(arguments, Mapping):
        return dict(arguments)
    if not arguments.strip():
        return {}
    try:
        parsed = json.loads(arguments)
    except ValueError as exc:
        raise ToolError(f"the arguments are not valid JSON ({exc})") from None
    if not isinstance(parsed, dict):
        raise ToolError("the arguments must be a JSON object")
    return parsed


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        return str(value)
