"""Function calls from the local server, event by event, checked against the SDK models.

The sequence mirrors the real API: the spoken part of the reply streams as a message item,
then the call goes out as a ``function_call`` item (added, argument deltas, done) before
``response.done``; the client's ``function_call_output`` reaches the responder with the
call it answers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from agent.local.replies import Reply, ReplyRequest, ToolCall
from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from tests.local_helpers import tone
from tests.test_local_protocol import DIALECTS, Harness, of_type, one, types

ARGUMENTS = json.dumps({"destination": "operator", "reason": "the caller asked for a person"})


class ToolResponder:
    """Says a line and calls ``transfer_call``; after the call's output, confirms."""

    def __init__(self, text: str = "Let me transfer you.") -> None:
        self.text = text
        self.requests: list[ReplyRequest] = []

    def reply(self, request: ReplyRequest) -> Reply:
        self.requests.append(request)
        if request.tool_result is not None:
            return Reply("Transferring you now.", iter([tone(200).astype("<i2").tobytes()]))
        audio = iter([tone(300).astype("<i2").tobytes()] if self.text else [])
        return Reply(self.text, audio, ToolCall("transfer_call", ARGUMENTS))


def respond(h: Harness) -> list[dict[str, Any]]:
    """Ask for a response and run the clock until it is done."""
    events = h.send({"type": "response.create"})
    if "response.done" not in types(events):
        events += h.until_done()
    return events


def opening(dialect: Dialect) -> list[str]:
    item = ["conversation.item.added"] if dialect is Dialect.GA else ["conversation.item.created"]
    return ["response.output_item.added", *item]


def call_events(dialect: Dialect, deltas: int) -> list[str]:
    done = ["conversation.item.done"] if dialect is Dialect.GA else []
    return [
        *opening(dialect),
        *["response.function_call_arguments.delta"] * deltas,
        "response.function_call_arguments.done",
        *done,
        "response.output_item.done",
        "response.done",
    ]


def streamed(dialect: Dialect) -> set[str]:
    return {
        wire_name(dialect, OutputEvent.AUDIO_DELTA),
        wire_name(dialect, OutputEvent.TRANSCRIPT_DELTA),
    }


@pytest.mark.parametrize("dialect", DIALECTS)
def test_spoken_reply_then_function_call(dialect: Dialect) -> None:
    h = Harness(dialect, responder=ToolResponder())
    events = respond(h)
    kinds = [t for t in types(events) if t not in streamed(dialect)]
    message_close = [
        wire_name(dialect, OutputEvent.AUDIO_DONE),
        wire_name(dialect, OutputEvent.TRANSCRIPT_DONE),
        "response.content_part.done",
        *(["conversation.item.done"] if dialect is Dialect.GA else []),
        "response.output_item.done",
    ]
    deltas = -(-len(ARGUMENTS) // 24)
    assert kinds == [
        "response.created",
        *opening(dialect),
        "response.content_part.added",
        *message_close,
        *call_events(dialect, deltas),
    ]
    response = one(events, "response.done")["response"]
    assert response["status"] == "completed"
    message, call = response["output"]
    assert message["type"] == "message" and message["content"][0]["transcript"] == (
        "Let me transfer you."
    )
    assert call["type"] == "function_call"
    assert call["status"] == "completed"
    assert call["name"] == "transfer_call"
    assert call["arguments"] == ARGUMENTS
    assert call["call_id"].startswith("call_")

    added = of_type(events, "response.output_item.added")[1]
    assert added["output_index"] == 1
    assert added["item"]["status"] == "in_progress" and added["item"]["arguments"] == ""
    pieces = of_type(events, "response.function_call_arguments.delta")
    assert "".join(p["delta"] for p in pieces) == ARGUMENTS
    done = one(events, "response.function_call_arguments.done")
    assert done["arguments"] == ARGUMENTS
    for event in [*pieces, done]:
        assert event["call_id"] == call["call_id"]
        assert event["item_id"] == call["id"]
        assert event["output_index"] == 1
        assert event["response_id"] == response["id"]
    # GA names the function in the done event too; the beta event has no such field.
    assert ("name" in done) is (dialect is Dialect.GA)
    # The call is part of the conversation, where the client's output will refer to it.
    assert h.protocol.item(call["id"]) is not None


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_bare_function_call_has_no_message(dialect: Dialect) -> None:
    h = Harness(dialect, responder=ToolResponder(text=""))
    events = h.send({"type": "response.create"})
    assert types(events) == ["response.created", *call_events(dialect, 3)]
    (call,) = one(events, "response.done")["response"]["output"]
    assert call["type"] == "function_call"
    assert of_type(events, "response.output_item.added")[0]["output_index"] == 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_function_call_output_reaches_the_responder(dialect: Dialect) -> None:
    responder = ToolResponder()
    h = Harness(dialect, responder=responder)
    events = respond(h)
    call = one(events, "response.done")["response"]["output"][1]
    output: dict[str, Any] = {
        "type": "function_call_output",
        "call_id": call["call_id"],
        "output": "The caller was transferred to operator.",
    }
    h.send({"type": "conversation.item.create", "item": output})
    events = respond(h)
    result = responder.requests[-1].tool_result
    assert result is not None
    assert result.name == "transfer_call"
    assert result.arguments == ARGUMENTS
    assert result.output == "The caller was transferred to operator."
    transcript = one(events, wire_name(dialect, OutputEvent.TRANSCRIPT_DONE))["transcript"]
    assert transcript == "Transferring you now."
    assert len(one(events, "response.done")["response"]["output"]) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
def test_an_interrupted_reply_makes_no_call(dialect: Dialect) -> None:
    h = Harness(dialect, responder=ToolResponder())
    h.send({"type": "response.create"})
    events = h.send({"type": "response.cancel"})
    assert "response.function_call_arguments.done" not in types(events)
    response = one(events, "response.done")["response"]
    assert response["status"] == "cancelled"
    assert [item["type"] for item in response["output"]] == ["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_the_session_tools_reach_the_responder(dialect: Dialect) -> None:
    responder = ToolResponder()
    h = Harness(dialect, responder=responder)
    tool = {"type": "function", "name": "end_call", "parameters": {"type": "object"}}
    session: dict[str, Any] = {"tools": [tool], "tool_choice": "auto"}
    if dialect is Dialect.GA:
        session["type"] = "realtime"
    h.send({"type": "session.update", "session": session})
    h.send({"type": "response.create"})
    assert responder.requests[-1].tools == {"end_call": {"type": "object"}}
    h.until_done()
    h.send({"type": "session.update", "session": {**session, "tool_choice": "none"}})
    h.send({"type": "response.create"})
    assert responder.requests[-1].tools == {}
