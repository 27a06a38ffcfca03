"""Runs tools as asyncio tasks, under one set of rules for every tool.

The conversation does not wait for a tool: each call is its own task, and its result goes
back to the call's bridge (which decides what the model is told, see
:mod:`agent.tools.protocol`) whenever it finishes. Whatever goes wrong inside a tool
(unparseable or invalid arguments, an unknown name, an exception, the time limit) becomes an
``Error: …`` output the model can read and act on; it never reaches the call. Every call is
logged and written to the transcript with its name, duration and outcome, and its arguments
with the profile's redactions applied.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import structlog

from agent.config import ToolSettings
from agent.observe.transcript import RecordWriter
from agent.tools.registry import ToolError, ToolResult, ToolSet, redacted
from agent.tools.schema import validate


def cap_output(output: str, limit: int) -> str:
    """``output`` cut to ``limit`` characters, saying how much was cut."""
    if len(output) <= limit:
        return output
    return f"{output[:limit]}… [output cut: {len(output) - limit} more characters]"


class ToolRunner:
    """One call's tool execution."""

    def __init__(
        self,
        tools: ToolSet,
        settings: ToolSettings,
        records: RecordWriter,
        log: Any = None,
        on_outcome: Callable[[str], None] | None = None,
    ) -> None:
        self.tools = tools
        self.settings = settings
        self.records = records
        self.log = log or structlog.get_logger("tools")
        #: Told each call's outcome: ok, error, timeout, failed or cancelled.
        self.on_outcome = on_outcome
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0

    def spawn(self, work: Awaitable[None], name: str) -> None:
        """Run ``work`` as a task of this call (cancelled by ``close``)."""
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

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
        self.records.event("tool_call", **fields)
        if self.on_outcome is not None:
            self.on_outcome(outcome)

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
