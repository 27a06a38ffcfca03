"""How a call ended, in words: who ended it and why.

The SIP code alone lies about it (an agent-side hang-up of a ringing call is "603 Decline",
and a caller's BYE and the agent's BYE both end with 200). Whoever decides to end a call
says so here first; the first word stands, so a BYE that follows an agent decision is not
taken for the caller hanging up.
"""

from __future__ import annotations

from dataclasses import dataclass

CALLER = "caller"
AGENT = "agent"
TRANSFER = "transfer"
FAR_END = "far end"


@dataclass
class CallOutcome:
    """One call's end: ``ended_by`` (caller, agent, transfer, far end) and ``reason``."""

    ended_by: str = ""
    reason: str = ""

    def decide(self, ended_by: str, reason: str) -> None:
        """Record who ends the call and why, unless that was already said."""
        if not self.ended_by:
            self.ended_by, self.reason = ended_by, reason

    def disconnected(self, code: int, text: str, answered: bool) -> None:
        """The SIP call is gone; when nobody here decided it, the far end did."""
        if code == 487 or (not answered and code < 300):
            self.decide(CALLER, "the caller hung up before the call was answered")
        elif answered and code in (200, 0):
            self.decide(CALLER, "the caller hung up")
        else:
            self.decide(FAR_END, f"{code} {text}".strip())
