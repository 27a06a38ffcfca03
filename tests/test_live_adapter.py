"""The GPT-Live adapter against the ``openai.types.live`` models, both ways."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent.bridge import events as ev
from agent.bridge.adapter import MalformedEvent
from agent.bridge.requests import (
    AppendAudio,
    CancelResponse,
    ClientRequest,
    CloseSession,
    ConfigureSession,
    CreateItem,
    CreateResponse,
    DelegationResult,
    Message,
    SessionSpec,
    SetAudioFormat,
    Truncate,
    Turn,
)
from agent.live.adapter import LiveAdapter
from testbed.oracle import LIVE, validate_client_event, validate_server_event

TOOL = {
    "type": "function",
    "name": "transfer_call",
    "description": "Transfer the caller to a colleague.\nMore details.",
    "parameters": {"type": "object", "properties": {}},
}
SPEC = SessionSpec(
    "You answer the phone for Acme.",
    "marin",
    codec="pcmu",
    tools=[TOOL],
    model="gpt-live-1.1",
    acknowledgement_delay_ms=400,
    history=(Turn("user", "Where is order 42?"), Turn("assistant", "It shipped today.")),
)
REQUESTS: list[ClientRequest] = [
    ConfigureSession(SPEC),
    AppendAudio(b"\xff" * 160),
    CreateResponse(instructions="Greet the caller."),
    CreateItem(Message("m1", "user", "The caller pressed 1 on the phone keypad.")),
    DelegationResult("item_abc", "The order shipped.", spoken=True),
    DelegationResult("item_abc", "Looked it up.", spoken=False),
    CloseSession(),
]


def _without_id(event: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in event.items() if key != "event_id"}


def _wire(adapter: LiveAdapter, request: ClientRequest) -> list[dict[str, Any]]:
    events = [json.loads(text) for text in adapter.encode(request)]
    # Each call numbers its events afresh; apart from the ids, encode is wire serialised.
    assert [_without_id(event) for event in events] == [
        _without_id(event) for event in adapter.wire(request)
    ]
    for event in events:
        validate_client_event(LIVE, event)
    return events


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_encodes_to_a_valid_live_client_event(request_: ClientRequest) -> None:
    assert len(_wire(LiveAdapter(), request_)) == 1


def test_session_start_carries_the_call_codec_delegation_and_history() -> None:
    (start,) = _wire(LiveAdapter(), ConfigureSession(SPEC))
    session = start["session"]
    assert session["model"] == "gpt-live-1.1"
    assert session["audio"] == {
        "format": {"type": "audio/pcmu", "rate": 8000},
        "output": {"voice": "marin"},
    }
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 400}
    # The voice model has no tools: it is told which work it can delegate.
    assert "- transfer_call: Transfer the caller to a colleague." in session["instructions"]
    assert session["input"] == [
        {"type": "message", "role": "user",
         "content": [{"type": "input_text", "text": "Where is order 42?"}]},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "It shipped today."}]},
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("codec", "fmt"),
    [("pcma", {"type": "audio/pcma", "rate": 8000}),
     ("pcm16-16k", {"type": "audio/pcm", "rate": 16000}),
     ("pcm16", {"type": "audio/pcm", "rate": 24000})],
)  # fmt: skip
def test_every_session_codec_is_a_live_format(codec: str, fmt: dict[str, Any]) -> None:
    spec = SessionSpec("Hi.", "marin", codec=codec, model="gpt-live-1")
    (start,) = _wire(LiveAdapter(), ConfigureSession(spec))
    assert start["session"]["audio"]["format"] == fmt
    assert "input" not in start["session"]


@pytest.mark.parametrize(
    "request_",
    [Truncate("i", 100), CancelResponse(), SetAudioFormat("pcma"), CreateResponse()],
    ids=lambda r: type(r).__name__,
)
def test_what_live_has_no_place_for_sends_nothing(request_: ClientRequest) -> None:
    assert LiveAdapter().encode(request_) == []


class Server:
    """Valid GPT-Live server events, fed to one adapter."""

    def __init__(self) -> None:
        self.adapter = LiveAdapter()
        self._n = 0

    def send(self, event_type: str, **fields: Any) -> list[ev.ServerEvent]:
        self._n += 1
        event = {"type": event_type, **fields}
        if event_type != "session.output_audio.delta":
            event["event_id"] = f"event_{self._n}"
        validate_server_event(LIVE, event)
        return self.adapter.parse(json.dumps(event))

    def audio(self, data: bytes = b"\x7f" * 160) -> list[ev.ServerEvent]:
        return self.send("session.output_audio.delta", delta=base64.b64encode(data).decode())

    def said(self, delta: str, kind: str = "output") -> list[ev.ServerEvent]:
        return self.send(f"session.{kind}_transcript.delta", delta=delta, start_ms=0, end_ms=10)


def _session(**extra: Any) -> dict[str, Any]:
    return {"id": "sess_1", "expires_at": 1_900_000_000, "model": "gpt-live-1.1",
            "status": "active", **extra}  # fmt: skip


def test_turns_are_numbered_from_who_speaks() -> None:
    server = Server()
    assert server.send("session.started", session=_session()) == [ev.SessionReady(1.9e9)]
    first = server.audio()
    assert isinstance(first[0], ev.ResponseCreated)
    agent = first[0].response_id
    assert first[1] == ev.AudioDelta(agent, agent, b"\x7f" * 160)
    assert server.said("Hello, how can") == [ev.TranscriptDelta(agent, "Hello, how can")]
    assert server.audio() == [ev.AudioDelta(agent, agent, b"\x7f" * 160)]
    # The caller's transcript closes the agent's turn and is the server's sign it heard them.
    heard = server.said("Where is ", "input")
    assert heard[:3] == [
        ev.AudioDone(agent),
        ev.TranscriptDone(agent, None),
        ev.ResponseDone(agent),
    ]
    caller = heard[3]
    assert isinstance(caller, ev.CallerHeard) and caller.text == "Where is"
    # Each delta also says what the caller's open turn holds so far.
    assert server.said("my order?", "input") == [
        ev.CallerHeard(caller.item_id, "Where is my order?")
    ]
    delegation = {"id": "item_9", "type": "delegation", "target": "client"}
    assert server.send("session.delegation.created", offset_ms=900, delegation=delegation) == [
        ev.DelegationRequested("item_9", "Where is my order?")
    ]
    # The agent speaking again closes the caller's turn, with all of its words.
    second = server.audio()
    assert isinstance(second[0], ev.CallerTranscript)
    assert second[0].text == "Where is my order?"
    assert isinstance(second[1], ev.ResponseCreated) and second[1].response_id != agent


def test_usage_close_and_errors() -> None:
    server = Server()
    assert server.send("session.usage.updated", usage={"seconds": 12.5}) == [
        ev.UsageUpdated({"seconds": 12.5})
    ]
    closed = server.send(
        "session.closed", reason="expired", usage={"seconds": 3600}, session=_session()
    )
    assert closed == [ev.UsageUpdated({"seconds": 3600.0}), ev.SessionClosed("expired")]
    error = {"type": "invalid_request_error", "code": "unknown_parameter",
             "message": "Unknown parameter", "client_event_id": "evt_3"}  # fmt: skip
    assert server.send("error", error=error) == [
        ev.ServerError("unknown_parameter", "Unknown parameter", "evt_3")
    ]


def test_a_session_in_another_format_than_asked_is_an_error() -> None:
    server = Server()
    server.adapter.encode(ConfigureSession(SPEC))  # asks for pcmu
    pcma = {"format": {"type": "audio/pcma", "rate": 8000}}
    events = server.send("session.started", session=_session(audio=pcma))
    assert isinstance(events[0], ev.ServerError) and events[0].code == "audio_format_mismatch"
    assert isinstance(events[1], ev.SessionReady)


def test_malformed_events_are_told_apart_from_others() -> None:
    adapter = LiveAdapter()
    assert adapter.parse("not json") == []
    assert adapter.parse('{"type": "session.thinking.appended"}') == []
    with pytest.raises(MalformedEvent):
        adapter.parse(json.dumps({"type": "session.output_audio.delta", "delta": "!!"}))
    with pytest.raises(MalformedEvent):
        adapter.parse(json.dumps({"type": "session.usage.updated", "usage": {}}))


def test_two_sessions_never_share_turn_ids() -> None:
    ids = set()
    for _ in range(2):
        created = Server().audio()[0]
        assert isinstance(created, ev.ResponseCreated)
        ids.add(created.response_id)
    assert len(ids) == 2
