"""What the bridge asks of the call's shell: SIP actions, tools to run, notes to log.

The shell (``agent.call.CallSession``) carries them out: an action on the SIP engine, a tool
run as its own task, a line written to the log. The bridge decides; the shell does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agent.bridge.requests import Turn


@dataclass(frozen=True, slots=True)
class HangUp:
    """End the call (BYE): ``ended_by`` and ``reason`` say why, for the records."""

    ended_by: str
    reason: str


@dataclass(frozen=True, slots=True)
class Transfer:
    """Blind-transfer the call to ``uri`` (REFER); progress comes back as transfer_status."""

    uri: str


@dataclass(frozen=True, slots=True)
class HoldCall:
    """Put the call on hold ourselves (re-INVITE a=sendonly) before a transfer; the outcome
    comes back as ``CallBridge.agent_hold_done``. Music on hold plays meanwhile."""


@dataclass(frozen=True, slots=True)
class ResumeCall:
    """Take the call off our hold (re-INVITE a=sendrecv): the transfer failed."""


@dataclass(frozen=True, slots=True)
class TransferFinished:
    """The transfer's final outcome, for the tool that asked for it."""

    status: int
    reason: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class HungUp:
    """The hang-up a tool asked for has happened (or the call was over already)."""


@dataclass(frozen=True, slots=True)
class SendDtmf:
    digits: str


@dataclass(frozen=True, slots=True)
class RunTool:
    """Run the tool ``name`` (the model's function call ``call_id``, or ``origin`` a DTMF key);
    its result comes back through ``CallBridge.tool_result`` (when ``call_id`` is set)."""

    name: str
    arguments: str
    call_id: str | None = None
    origin: str = "model"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Open a new realtime session: the last one was lost."""


@dataclass(frozen=True, slots=True)
class Rollover:
    """Replace the session before the server ends it: open a new one with the conversation
    so far, switch over, close the old one (the bridge picked a quiet moment)."""


@dataclass(frozen=True, slots=True)
class Delegate:
    """Do the work GPT-Live delegated (``delegation_id``): ask the delegation model with the
    conversation so far and ``request`` (the caller's words), running the tools it calls; the
    answer comes back through ``CallBridge.delegation_result``."""

    delegation_id: str
    request: str
    history: tuple[Turn, ...]


@dataclass(frozen=True, slots=True)
class Note:
    """A log line: ``event`` and its fields, at ``level`` (debug, info, warning, error)."""

    event: str
    level: str = "info"
    fields: dict[str, Any] = field(default_factory=dict)


Action = (
    HangUp
    | HoldCall
    | ResumeCall
    | Transfer
    | TransferFinished
    | HungUp
    | SendDtmf
    | RunTool
    | Reconnect
    | Rollover
    | Delegate
    | Note
)
