"""What the local Responses endpoint answers a request with: the brain's decision for its
latest turn, as a message or as a function call, never both.

A delegation backend's function call needs no words of its own: the Live voice already said
the intent's reply ("Let me put you through...") before it delegated. After the call's output
comes back, the brain says what the script says after that function. With no brain (the
synthetic backend), every request gets the same short message.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agent.local.brain import Brain
from agent.local.replies import ToolCall, ToolResult
from agent.local.responses_api.requests import CreateRequest, latest_turn

FIXED_TEXT = "This is the local test backend."
"""The synthetic backend's answer to every request."""


@dataclass(frozen=True)
class Answer:
    """A message's text, or a function call."""

    text: str | None = None
    call: ToolCall | None = None


def answer(brain: Brain | None, request: CreateRequest, items: list[dict[str, Any]]) -> Answer:
    """The answer to ``request``, whose whole input (earlier turns included) is ``items``."""
    turn = latest_turn(items)
    if brain is None:
        return Answer(text=FIXED_TEXT)
    if isinstance(turn, ToolResult):
        decision = brain.after_tool(turn)
    else:
        # No user message at all reads as silence: the brain asks the caller to say it again.
        decision = brain.answer(turn.text if turn is not None else "", request.offered())
    if decision.tool_call is not None:
        return Answer(call=decision.tool_call)
    return Answer(text=decision.text)
