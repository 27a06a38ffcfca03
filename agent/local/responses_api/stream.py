"""One response's events, in the order the Responses API streams them.

``response.created`` and ``response.in_progress`` open it; each output item is added, its
content streamed (a message's text a word per delta, a function call's arguments in pieces)
and done; ``response.completed`` closes it with the full response object, output included.
Sequence numbers count from 0 within each response, as in a streamed HTTP response.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from agent.local.events import Event, ProtocolError, new_id
from agent.local.responses_api.answers import Answer
from agent.local.responses_api.requests import CreateRequest

ARGUMENTS_DELTA_CHARS = 24
"""Function call arguments are streamed in pieces of this size, like a model's token deltas."""


class ResponseStream:
    """The events of one response, built as its output is added."""

    def __init__(self, request: CreateRequest, response_id: str, created_at: float) -> None:
        self.id = response_id
        self._request = request
        self._created_at = created_at
        self._sequence = 0
        self.output: list[dict[str, Any]] = []
        """The output items so far, as ``response.completed`` lists them."""
        self.events: list[Event] = []

    def run(self, answer: Answer | None) -> list[Event]:
        """Every event of the response answering with ``answer`` (None: a warm-up, no output)."""
        self._emit("response.created", response=self._response("in_progress"))
        self._emit("response.in_progress", response=self._response("in_progress"))
        if answer is not None and answer.call is not None:
            self._function_call(answer.call.name, answer.call.arguments)
        elif answer is not None and answer.text is not None:
            self._message(answer.text)
        self._emit("response.completed", response=self._response("completed"))
        return self.events

    def _message(self, text: str) -> None:
        index = len(self.output)
        item: dict[str, Any] = {
            "id": new_id("msg"),
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        self._emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
        self._emit("response.content_part.added", **ids, part=_text_part(""))
        for word in re.findall(r"\s*\S+", text):
            self._emit("response.output_text.delta", **ids, delta=word, logprobs=[])
        self._emit("response.output_text.done", **ids, text=text, logprobs=[])
        self._emit("response.content_part.done", **ids, part=_text_part(text))
        item.update(status="completed", content=[_text_part(text)])
        self.output.append(item)
        self._emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def _function_call(self, name: str, arguments: str) -> None:
        index = len(self.output)
        item: dict[str, Any] = {
            "id": new_id("fc"),
            "type": "function_call",
            "call_id": new_id("call"),
            "name": name,
            "arguments": "",
            "status": "in_progress",
        }
        self._emit("response.output_item.added", output_index=index, item=copy.deepcopy(item))
        ids = {"item_id": item["id"], "output_index": index}
        for start in range(0, len(arguments), ARGUMENTS_DELTA_CHARS):
            delta = arguments[start : start + ARGUMENTS_DELTA_CHARS]
            self._emit("response.function_call_arguments.delta", **ids, delta=delta)
        self._emit("response.function_call_arguments.done", **ids, arguments=arguments)
        item.update(status="completed", arguments=arguments)
        self.output.append(item)
        self._emit("response.output_item.done", output_index=index, item=copy.deepcopy(item))

    def _response(self, status: str) -> dict[str, Any]:
        request = self._request
        return {
            "id": self.id,
            "object": "response",
            "created_at": self._created_at,
            "status": status,
            "model": request.model,
            "instructions": request.instructions,
            "output": copy.deepcopy(self.output) if status == "completed" else [],
            "parallel_tool_calls": request.parallel_tool_calls,
            "tool_choice": copy.deepcopy(request.tool_choice),
            "tools": [tool.wire() for tool in request.tools],
            "previous_response_id": request.previous_response_id,
            "metadata": dict(request.metadata) if request.metadata is not None else None,
            "error": None,
            "incomplete_details": None,
            "usage": None,
        }

    def _emit(self, type_: str, **fields: Any) -> None:
        event: Event = {"type": type_, "sequence_number": self._sequence, **fields}
        if self._request.stream_id is not None:
            event["stream_id"] = self._request.stream_id
        self.events.append(event)
        self._sequence += 1


def error_event(err: ProtocolError) -> Event:
    """The ``error`` event of a request the endpoint refused (or failed on)."""
    status = 500 if err.kind == "server_error" else 400
    return {
        "type": "error",
        "status": status,
        "error": {"type": err.kind, "code": err.code, "message": err.message, "param": err.param},
    }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}
