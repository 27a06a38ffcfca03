"""A ``response.create`` as the local Responses endpoint receives it, and its input items read.

Checked leniently: a model API has many knobs (reasoning, temperature, caching...) that mean
nothing to a scripted brain, so fields it does not use are ignored. What it does use (the
model, the input items, the function tools, the tool choice) must be well formed, or the
request is refused with a ``ProtocolError``, as the real API refuses it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.local.events import ProtocolError
from agent.local.replies import ToolResult

_ROLES = ("user", "assistant", "system", "developer")
_TEXT_PARTS = ("input_text", "output_text", "text")
_TOOL_CHOICES = ("auto", "none", "required")


@dataclass(frozen=True)
class FunctionTool:
    """A function the request offers the model."""

    name: str
    description: str | None
    parameters: dict[str, Any]
    strict: bool | None

    def wire(self) -> dict[str, Any]:
        """The tool as the response object echoes it."""
        return {
            "type": "function",
            "name": self.name,
            "description": self.description,
            "parameters": copy.deepcopy(self.parameters),
            "strict": self.strict,
        }


@dataclass(frozen=True)
class CreateRequest:
    """The parts of a ``response.create`` the local endpoint acts on or echoes."""

    model: str
    instructions: str | None
    input: list[dict[str, Any]]
    """The input items, a string input already made one user message."""
    tools: list[FunctionTool]
    """The function tools (other tool types mean nothing here and are left out)."""
    tool_choice: str | dict[str, Any]
    parallel_tool_calls: bool
    previous_response_id: str | None
    metadata: dict[str, str] | None
    generate: bool
    """False for a warm-up: the response is created and completed with no output."""
    stream_id: str | None
    """The WebSocket lane the client named, echoed on every event of the response."""

    def offered(self) -> dict[str, Mapping[str, Any]]:
        """The functions the model may call (after ``tool_choice``) -> argument schemas."""
        if self.tool_choice == "none":
            return {}
        tools = {tool.name: tool.parameters for tool in self.tools}
        if isinstance(self.tool_choice, dict):
            chosen = self.tool_choice["name"]
            return {name: schema for name, schema in tools.items() if name == chosen}
        return dict(tools)


@dataclass(frozen=True)
class UserTurn:
    """The latest turn is the user's message ``text``."""

    text: str


def parse_create(event: dict[str, Any]) -> CreateRequest:
    """The request a ``response.create`` event makes."""
    model = event.get("model")
    if model is None:
        raise ProtocolError(
            "Missing required parameter: 'model'.", code="missing_required_parameter", param="model"
        )
    if not isinstance(model, str) or not model:
        raise ProtocolError(
            "Invalid type for 'model': expected a non-empty string.",
            code="invalid_type",
            param="model",
        )
    instructions = _optional(event, "instructions", str)
    previous = _optional(event, "previous_response_id", str)
    metadata = event.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise ProtocolError(
            "Invalid type for 'metadata': expected an object of strings.",
            code="invalid_type",
            param="metadata",
        )
    parallel = _optional(event, "parallel_tool_calls", bool)
    generate = _optional(event, "generate", bool)
    tools = _tools(event.get("tools"))
    return CreateRequest(
        model=model,
        instructions=instructions,
        input=_input(event.get("input")),
        tools=tools,
        tool_choice=_tool_choice(event.get("tool_choice"), {tool.name for tool in tools}),
        parallel_tool_calls=True if parallel is None else parallel,
        previous_response_id=previous,
        metadata=dict(metadata) if metadata is not None else None,
        generate=True if generate is None else generate,
        stream_id=_optional(event, "stream_id", str),
    )


def latest_turn(items: list[dict[str, Any]]) -> UserTurn | ToolResult | None:
    """What the response answers: the latest user message, or the latest function call
    output when that came after it (with the call it answers, found by ``call_id``)."""
    for index in range(len(items) - 1, -1, -1):
        item = items[index]
        kind = item.get("type", "message")
        if kind == "function_call_output":
            return _tool_result(item, items[:index])
        if kind == "message" and item.get("role") == "user":
            return UserTurn(message_text(item))
    return None


def message_text(item: dict[str, Any]) -> str:
    """The text of a message item (its text parts, joined)."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else []
    return " ".join(
        part["text"]
        for part in parts
        if isinstance(part, dict)
        and part.get("type") in _TEXT_PARTS
        and isinstance(part.get("text"), str)
    )


# ---- the parts ---------------------------------------------------------------------------------


def _input(raw: object) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if isinstance(raw, str):
        return [{"type": "message", "role": "user", "content": raw}]
    if not isinstance(raw, list):
        raise ProtocolError(
            "Invalid type for 'input': expected a string or an array of input items.",
            code="invalid_type",
            param="input",
        )
    return [_item(item, f"input[{index}]") for index, item in enumerate(raw)]


def _item(raw: object, param: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ProtocolError(
            f"Invalid type for '{param}': expected an object.", code="invalid_type", param=param
        )
    item: dict[str, Any] = copy.deepcopy(raw)
    kind = item.get("type", "message" if "role" in item else None)
    if kind == "message":
        if item.get("role") not in _ROLES:
            raise ProtocolError(
                f"Invalid value: {item.get('role')!r}. Supported values are: 'user', "
                "'assistant', 'system', and 'developer'.",
                code="invalid_value",
                param=f"{param}.role",
            )
        content = item.get("content")
        if not isinstance(content, str) and not (
            isinstance(content, list) and all(isinstance(part, dict) for part in content)
        ):
            raise ProtocolError(
                f"Invalid type for '{param}.content': expected a string or an array of "
                "content parts.",
                code="invalid_type",
                param=f"{param}.content",
            )
    elif kind == "function_call":
        for key in ("call_id", "name", "arguments"):
            _string(item, key, param)
    elif kind == "function_call_output":
        _string(item, "call_id", param)
        output = item.get("output")
        if not isinstance(output, str) and not isinstance(output, list):
            raise ProtocolError(
                f"Invalid type for '{param}.output': expected a string or an array of content.",
                code="invalid_type",
                param=f"{param}.output",
            )
    elif not isinstance(kind, str):
        raise ProtocolError(
            f"Missing required parameter: '{param}.type'.",
            code="missing_required_parameter",
            param=f"{param}.type",
        )
    # Other item types (reasoning, web search calls...) are history the brain cannot read.
    return item


def _tools(raw: object) -> list[FunctionTool]:
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ProtocolError(
            "Invalid type for 'tools': expected an array.", code="invalid_type", param="tools"
        )
    tools: list[FunctionTool] = []
    for index, tool in enumerate(raw):
        param = f"tools[{index}]"
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise ProtocolError(
                f"Missing required parameter: '{param}.type'.",
                code="missing_required_parameter",
                param=f"{param}.type",
            )
        if tool["type"] != "function":
            continue
        name = _string(tool, "name", param)
        parameters = tool.get("parameters")
        if parameters is not None and not isinstance(parameters, dict):
            raise ProtocolError(
                f"Invalid type for '{param}.parameters': expected a JSON schema object.",
                code="invalid_type",
                param=f"{param}.parameters",
            )
        description = _optional(tool, "description", str, param)
        strict = _optional(tool, "strict", bool, param)
        tools.append(FunctionTool(name, description, dict(parameters or {}), strict))
    return tools


def _tool_choice(raw: object, names: set[str]) -> str | dict[str, Any]:
    if raw is None:
        return "auto"
    if isinstance(raw, str) and raw in _TOOL_CHOICES:
        return raw
    if isinstance(raw, dict) and raw.get("type") == "function":
        name = raw.get("name")
        if not isinstance(name, str) or name not in names:
            raise ProtocolError(
                f"Invalid value for 'tool_choice.name': {name!r} is not one of the request's "
                "function tools.",
                code="invalid_value",
                param="tool_choice.name",
            )
        return {"type": "function", "name": name}
    raise ProtocolError(
        "Invalid value for 'tool_choice': the local server takes 'auto', 'none', 'required' "
        'or {"type": "function", "name": ...}.',
        code="invalid_value",
        param="tool_choice",
    )


def _tool_result(output: dict[str, Any], before: list[dict[str, Any]]) -> ToolResult:
    call_id = output["call_id"]
    call = next(
        (
            item
            for item in reversed(before)
            if item.get("type") == "function_call" and item.get("call_id") == call_id
        ),
        None,
    )
    if call is None:
        raise ProtocolError(
            f"No tool call found for function call output with call_id {call_id}.",
            code="invalid_value",
            param="input",
        )
    result = output["output"]
    text = result if isinstance(result, str) else message_text({"content": result})
    return ToolResult(name=call["name"], arguments=call["arguments"], output=text)


def _string(item: dict[str, Any], key: str, param: str) -> str:
    value = item.get(key)
    if not isinstance(value, str):
        raise ProtocolError(
            f"Missing required parameter: '{param}.{key}'.",
            code="missing_required_parameter",
            param=f"{param}.{key}",
        )
    return value


def _optional(obj: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    value = obj.get(key)
    if value is not None and not isinstance(value, kind):
        param = f"{where}.{key}" if where else key
        raise ProtocolError(
            f"Invalid type for '{param}': expected {kind.__name__}.",
            code="invalid_type",
            param=param,
        )
    return value
