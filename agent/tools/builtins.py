"""Built-in call-control tools: end the call, transfer it, send DTMF.

They act on the call through :class:`CallControl`, so they are tested without SIP. The model
never supplies a number or URI: ``transfer_call`` takes a destination *name* from the profile's
allowlist (``[tools.transfer_destinations]``) and ``send_dtmf`` only sends what the profile's
pattern admits. A caller can talk a model into anything; these limits are what stop it from
becoming a free long-distance line (toll fraud).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from agent.bridge.bridge import QUIET_WAIT_MS
from agent.config import DTMF_DIGITS, ToolSettings
from agent.tools.registry import Tool, ToolError, ToolResult

#: Longest wait for the agent's last words to be heard before hanging up or transferring.
QUIET_WAIT_S = QUIET_WAIT_MS / 1000


@dataclass(frozen=True)
class TransferOutcome:
    """The final state of a REFER, from the NOTIFY sipfrag (or the REFER's own response)."""

    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class CallControl(Protocol):
    """What the built-in tools may do to the call."""

    async def end_call(self, reason: str) -> None:
        """Hang up once the agent's current words have been heard; ``reason`` says why, in
        words, for the call's record. Returns once the call is ended."""
        ...

    async def transfer(self, uri: str) -> TransferOutcome:
        """Blind transfer (REFER) once the agent's words have been heard; the final outcome.
        Raises ToolError when the REFER cannot be sent."""
        ...

    def send_dtmf(self, digits: str) -> None:
        """Send RFC 4733 telephone-events; raises ToolError if they cannot be sent."""
        ...


def _end_call(control: CallControl) -> Tool:
    async def handler(args: dict[str, Any]) -> ToolResult:
        # The goodbye is usually in the same response as the call: it is heard first.
        reason = str(args.get("reason") or "no reason given")
        await control.end_call(f"end_call: {reason}")
        return ToolResult(f"The call has ended ({reason}).", False)

    return Tool(
        name="end_call",
        description=(
            "Hang up the phone call. Say goodbye first; the call ends once you have finished "
            "speaking."
        ),
        parameters={
            "type": "object",
            "properties": {
                "reason": {"type": "string", "description": "Why the call is ending, briefly."}
            },
            "required": ["reason"],
            "additionalProperties": False,
        },
        handler=handler,
        timeout_s=QUIET_WAIT_S + 10,
    )


def _transfer_call(control: CallControl, destinations: dict[str, str]) -> Tool:
    async def handler(args: dict[str, Any]) -> ToolResult:
        name = args["destination"]
        uri = destinations.get(name)
        if uri is None:  # The schema's enum already says so; never send a REFER regardless.
            raise ToolError(f"{name!r} is not a transfer destination ({', '.join(destinations)})")
        outcome = await control.transfer(uri)
        if not outcome.ok:
            raise ToolError(
                f"the transfer to {name} failed ({outcome.status} {outcome.reason}); the caller "
                "is still on the line with you"
            )
        return ToolResult(f"The caller was transferred to {name}.", respond=False)

    names = sorted(destinations)
    return Tool(
        name="transfer_call",
        description=(
            "Transfer the caller to another department or person. Tell the caller first. "
            f"Destinations: {', '.join(names)}."
        ),
        parameters={
            "type": "object",
            "properties": {
                "destination": {
                    "type": "string",
                    "enum": names,
                    "description": "Where to transfer the call.",
                }
            },
            "required": ["destination"],
            "additionalProperties": False,
        },
        handler=handler,
        # Waiting for the agent to finish, then for the far end to answer the transferred call.
        timeout_s=QUIET_WAIT_S + 40,
    )


def _send_dtmf(control: CallControl, pattern: str) -> Tool:
    allowed = re.compile(pattern)

    async def handler(args: dict[str, Any]) -> ToolResult:
        digits = str(args["digits"]).upper()
        bad = sorted({d for d in digits if d not in DTMF_DIGITS})
        if not digits or bad:
            raise ToolError(f"digits must be from {DTMF_DIGITS}, got {''.join(bad) or 'nothing'}")
        if not allowed.fullmatch(digits):
            raise ToolError("the profile does not allow sending these digits")
        control.send_dtmf(digits)
        return ToolResult(f"Sent the DTMF digits {digits}.")

    return Tool(
        name="send_dtmf",
        description="Press keys on the phone keypad (DTMF tones), e.g. to navigate a menu.",
        parameters={
            "type": "object",
            "properties": {
                "digits": {
                    "type": "string",
                    "description": f"The keys to press, in order, from {DTMF_DIGITS}.",
                }
            },
            "required": ["digits"],
            "additionalProperties": False,
        },
        handler=handler,
    )


def builtin_tools(settings: ToolSettings, control: CallControl) -> list[Tool]:
    """The built-in tools the profile enables, bound to one call."""
    made: dict[str, Tool] = {
        "end_call": _end_call(control),
        "send_dtmf": _send_dtmf(control, settings.send_dtmf_pattern),
    }
    if settings.transfer_destinations:
        made["transfer_call"] = _transfer_call(control, dict(settings.transfer_destinations))
    return [made[name] for name in settings.builtin if name in made]


def local_tools(settings: ToolSettings, control: CallControl) -> dict[str, Tool]:
    """Built-ins DTMF actions can use even when the model is not offered them."""
    tools = {"end_call": _end_call(control)}
    if settings.transfer_destinations:
        tools["transfer_call"] = _transfer_call(control, dict(settings.transfer_destinations))
    return tools
