"""Responses WebSocket mode, as far as delegated work needs it: the ``response.create`` we
send, and a reader that collects one response's function calls and text. No I/O.

The delegation model answers either with function calls (each completed call arrives as a
``response.output_item.done`` whose item is the ``function_call``) or with a message; a
response ends with ``response.completed``, ``.failed`` or ``.incomplete``, or an ``error``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from agent.bridge.requests import Turn

_TERMINAL = ("response.completed", "response.failed", "response.incomplete")


@dataclass(frozen=True, slots=True)
class FunctionCall:
    call_id: str
    name: str
    arguments: str


def history_items(history: tuple[Turn, ...], request: str) -> list[dict[str, Any]]:
    """The conversation so far as Responses input messages, ending with ``request`` (the
    caller's words in the turn that led to the delegation) unless it is already the last."""
    items: list[dict[str, Any]] = [{"role": turn.role, "content": turn.text} for turn in history]
    request = request.strip()
    if request and not (items and items[-1] == {"role": "user", "content": request}):
        items.append({"role": "user", "content": request})
    return items


def response_create(
    model: str, instructions: str, items: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> dict[str, Any]:
    """One ``response.create`` client event (stateless: the whole input every time)."""
    event: dict[str, Any] = {
        "type": "response.create",
        "model": model,
        "instructions": instructions,
        "input": items,
        "store": False,
    }
    if tools:
        event["tools"] = tools
        event["tool_choice"] = "auto"
    return event


def call_items(call: FunctionCall, output: str) -> list[dict[str, Any]]:
    """A call and its output, as the next round's input."""
    return [
        {
            "type": "function_call",
            "call_id": call.call_id,
            "name": call.name,
            "arguments": call.arguments,
        },
        {"type": "function_call_output", "call_id": call.call_id, "output": output},
    ]


@dataclass
class ResponseReader:
    """One response's outcome, fed the server's messages in order."""

    calls: list[FunctionCall] = field(default_factory=list)
    text: str = ""
    error: str | None = None
    done: bool = False

    def feed(self, message: str | bytes) -> bool:
        """Take one server message; True once the response has ended."""
        try:
            event = json.loads(message)
        except (ValueError, TypeError):
            return self.done
        if not isinstance(event, dict):
            return self.done
        kind = event.get("type")
        if kind == "response.output_item.done":
            self._item(event.get("item"))
        elif kind == "error":
            error = event.get("error")
            self.error = str(error.get("message")) if isinstance(error, dict) else str(error)
            self.done = True
        elif kind in _TERMINAL:
            if kind != "response.completed":
                self.error = self.error or _reason(event)
            self.done = True
        return self.done

    def _item(self, item: object) -> None:
        if not isinstance(item, dict):
            return
        if item.get("type") == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            if isinstance(call_id, str) and isinstance(name, str):
                arguments = item.get("arguments")
                text = arguments if isinstance(arguments, str) else "{}"
                self.calls.append(FunctionCall(call_id, name, text))
        elif item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and part.get("type") == "output_text":
                    self.text += str(part.get("text", ""))


def _reason(event: dict[str, Any]) -> str:
    response = event.get("response")
    if isinstance(response, dict):
        details = response.get("incomplete_details") or response.get("error")
        if isinstance(details, dict):
            return str(details.get("reason") or details.get("message") or event["type"])
    return str(event.get("type"))
