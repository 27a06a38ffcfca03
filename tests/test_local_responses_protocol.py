"""Sans-I/O tests of the local Responses WebSocket mode (``ResponsesProtocol``).

Every server event validates against ``openai.types.responses.ResponsesServerEvent`` (the
event's own model, strictly: ``testbed.oracle``), every request the tests send as valid against
``ResponsesClientEvent``. The requests are shaped like the agent's delegation worker's
(``agent/live/responses_wire.py``): the conversation as role/content messages, the call's
function tools, ``store: false``, a function call and its output as the next round's input.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.local.brain import load_brain
from agent.local.responses_api.answers import FIXED_TEXT
from agent.local.responses_api.protocol import ResponsesProtocol
from testbed.oracle import (
    RESPONSES,
    client_event_types,
    server_event_types,
    validate_client_event,
    validate_server_event,
)

TOOLS = [
    {
        "type": "function",
        "name": "transfer_call",
        "description": "Transfer the caller to a colleague.",
        "parameters": {
            "type": "object",
            "properties": {"destination": {"type": "string", "enum": ["sales", "support"]}},
            "required": ["destination"],
        },
    },
    {
        "type": "function",
        "name": "end_call",
        "description": "Hang up.",
        "parameters": {"type": "object", "properties": {"reason": {"type": "string"}}},
    },
]


def validate(side: str, event: dict[str, Any]) -> None:
    known = server_event_types if side == "server" else client_event_types
    assert event.get("type") in known(RESPONSES), event.get("type")
    check = validate_server_event if side == "server" else validate_client_event
    check(RESPONSES, event)


class Client:
    """Sends requests to a ``ResponsesProtocol``, validating both directions."""

    def __init__(self, protocol: ResponsesProtocol) -> None:
        self.protocol = protocol
        assert protocol.start() == []

    def create(self, **fields: Any) -> list[dict[str, Any]]:
        event = {"type": "response.create", "model": "gpt-5.5", "store": False, **fields}
        validate("client", event)
        return self.raw(json.dumps(event))

    def raw(self, message: str | bytes) -> list[dict[str, Any]]:
        events = self.protocol.receive(message, 0.0)
        for event in events:
            validate("server", event)
        assert self.protocol.poll(1.0) == [] and self.protocol.next_deadline() is None
        return events


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def completed(events: list[dict[str, Any]]) -> dict[str, Any]:
    assert events[-1]["type"] == "response.completed", [e["type"] for e in events]
    response: dict[str, Any] = events[-1]["response"]
    return response


def scripted() -> Client:
    return Client(ResponsesProtocol(brain=load_brain()))


def test_a_question_is_answered_with_a_streamed_message() -> None:
    client = scripted()
    events = client.create(
        instructions="Do what the caller asks.",
        input=[{"role": "user", "content": "What are your opening hours?"}],
        tools=TOOLS,
        tool_choice="auto",
    )
    kinds = [e["type"] for e in events]
    assert kinds[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    text = "We are open Monday to Saturday, from nine in the morning to six in the evening."
    assert "".join(e["delta"] for e in of_type(events, "response.output_text.delta")) == text
    response = completed(events)
    assert response["id"] == events[0]["response"]["id"]
    assert response["status"] == "completed"
    (message,) = response["output"]
    assert (message["type"], message["role"], message["content"][0]["text"]) == (
        "message",
        "assistant",
        text,
    )
    assert [tool["name"] for tool in response["tools"]] == ["transfer_call", "end_call"]


def test_a_tool_intent_is_a_function_call_and_its_output_gets_the_scripts_answer() -> None:
    client = scripted()
    history = [
        {"role": "assistant", "content": "Thank you for calling. How can I help you today?"},
        {"role": "user", "content": "Can I speak to a real person, please?"},
    ]
    first = client.create(input=history, tools=TOOLS, tool_choice="auto")
    (done,) = of_type(first, "response.output_item.done")
    call = done["item"]
    assert (call["type"], call["name"], call["status"]) == (
        "function_call",
        "transfer_call",
        "completed",
    )
    arguments = "".join(
        e["delta"] for e in of_type(first, "response.function_call_arguments.delta")
    )
    assert arguments == call["arguments"]
    assert json.loads(arguments) == {"destination": "sales"}  # the first listed destination
    assert completed(first)["output"] == [call]

    # Stateless, as the agent sends it: the whole input again, the call and its output last.
    round_two = [
        *history,
        {k: call[k] for k in ("type", "call_id", "name", "arguments")},
        {"type": "function_call_output", "call_id": call["call_id"], "output": '{"ok": true}'},
    ]
    second = client.create(input=round_two, tools=TOOLS, tool_choice="auto")
    (message,) = completed(second)["output"]
    assert message["content"][0]["text"] == "Transferring you now."


def test_a_response_continues_from_the_previous_one_by_id() -> None:
    client = scripted()
    first = client.create(input="Goodbye, and thank you.", tools=TOOLS)
    response = completed(first)
    (call,) = response["output"]
    assert call["name"] == "end_call"
    assert json.loads(call["arguments"]) == {"reason": "the caller said goodbye"}
    output = {"type": "function_call_output", "call_id": call["call_id"], "output": "ended"}
    second = client.create(previous_response_id=response["id"], input=[output], tools=TOOLS)
    assert completed(second)["previous_response_id"] == response["id"]
    assert completed(second)["output"][0]["content"][0]["text"] == "Goodbye!"
    # Only the most recent response can be continued (store is off).
    stale = client.create(previous_response_id=response["id"], input=[output])
    assert [e["type"] for e in stale] == ["error"]
    assert stale[0]["error"]["code"] == "previous_response_not_found"


def test_without_tools_the_script_answers_in_words() -> None:
    client = scripted()
    events = client.create(input=[{"role": "user", "content": "Can I speak to a person?"}])
    assert of_type(events, "response.function_call_arguments.delta") == []
    (message,) = completed(events)["output"]
    assert message["type"] == "message"
    assert message["content"][0]["text"].startswith("I am sorry, I cannot put you through")


def test_tool_choice_none_hides_the_tools() -> None:
    client = scripted()
    events = client.create(input="transfer me please", tools=TOOLS, tool_choice="none")
    assert completed(events)["output"][0]["type"] == "message"


def test_the_stream_id_is_echoed_and_a_warm_up_has_no_output() -> None:
    client = scripted()
    events = client.create(input="hello", stream_id="lane-1", generate=False)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.completed",
    ]
    assert all(e["stream_id"] == "lane-1" for e in events)
    assert completed(events)["output"] == []


def test_without_a_brain_every_request_gets_the_fixed_message() -> None:
    client = Client(ResponsesProtocol())
    events = client.create(input="anything at all", tools=TOOLS)
    assert completed(events)["output"][0]["content"][0]["text"] == FIXED_TEXT


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("{not json", None),
        (json.dumps({"type": "response.cancel"}), "invalid_value"),
        (json.dumps({"type": "response.create"}), "missing_required_parameter"),
        (json.dumps({"type": "response.create", "model": "m", "input": 5}), "invalid_type"),
        (
            json.dumps({"type": "response.create", "model": "m", "input": [{"role": "robot"}]}),
            "invalid_value",
        ),
        (
            json.dumps(
                {
                    "type": "response.create",
                    "model": "m",
                    "input": [{"type": "function_call_output", "call_id": "c", "output": "x"}],
                }
            ),
            "invalid_value",
        ),
        (
            json.dumps(
                {"type": "response.create", "model": "m", "tool_choice": {"type": "function"}}
            ),
            "invalid_value",
        ),
        (json.dumps({"type": "response.steer"}), "unsupported_event"),
    ],
)
def test_a_bad_request_gets_one_error_and_the_connection_goes_on(
    message: str, code: str | None
) -> None:
    client = scripted()
    events = client.raw(message)
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["status"] == 400
    if code is not None:
        assert events[0]["error"]["code"] == code
    assert completed(client.create(input="hello"))["status"] == "completed"
