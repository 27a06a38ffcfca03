"""The Realtime adapter: every request encodes to a valid wire event, and wire events parse
to the bridge's typed events, in both dialects (checked against the openai models)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from agent.bridge import events as ev
from agent.bridge.requests import (
    AppendAudio,
    CancelResponse,
    ClientRequest,
    ConfigureSession,
    CreateItem,
    CreateResponse,
    FunctionOutput,
    Message,
    SessionSpec,
    SetAudioFormat,
    Truncate,
)
from agent.realtime.adapter import MalformedEvent, RealtimeAdapter
from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from testbed.oracle import validate_client_event, validate_server_event

REQUESTS: list[ClientRequest] = [
    ConfigureSession(SessionSpec("Be brief.", "marin", turn_detection={"type": "server_vad"})),
    SetAudioFormat("pcmu"),
    SetAudioFormat("pcma"),
    SetAudioFormat("pcm16"),
    AppendAudio(bytes(480)),
    Truncate("item_1", 1234),
    CancelResponse(),
    CreateResponse(instructions="Greet the caller."),
    CreateResponse(tag="r1"),
    CreateItem(FunctionOutput("tool_out_000001", "call_1", "ok")),
    CreateItem(Message("tool_msg_000002", "user", "The caller pressed 1.")),
    CreateItem(Message("tool_msg_000003", "system", "The transfer failed.")),
]


@pytest.mark.parametrize("dialect", list(Dialect))
@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_encodes_to_a_valid_client_event(
    dialect: Dialect, request_: ClientRequest
) -> None:
    adapter = RealtimeAdapter(dialect)
    events = [json.loads(text) for text in adapter.encode(request_)]
    assert events == adapter.wire(request_)
    assert events
    for event in events:
        validate_client_event(dialect, event)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _server_events(dialect: Dialect) -> list[tuple[dict[str, Any], ev.ServerEvent | None]]:
    audio = wire_name(dialect, OutputEvent.AUDIO_DELTA)
    common = {"event_id": "event_1", "response_id": "resp_1", "item_id": "item_1"}
    response = {"id": "resp_1", "object": "realtime.response", "status": "in_progress",
                "output": [], "metadata": {"voice_agent_request": "r7"}}  # fmt: skip
    return [
        (
            {
                "type": audio,
                **common,
                "output_index": 0,
                "content_index": 0,
                "delta": _b64(b"\x01\x02"),
            },
            ev.AudioDelta("resp_1", "item_1", b"\x01\x02"),
        ),
        (
            {
                "type": wire_name(dialect, OutputEvent.AUDIO_DONE),
                **common,
                "output_index": 0,
                "content_index": 0,
            },
            ev.AudioDone("item_1"),
        ),
        (
            {
                "type": wire_name(dialect, OutputEvent.TRANSCRIPT_DONE),
                **common,
                "output_index": 0,
                "content_index": 0,
                "transcript": "Hello.",
            },
            ev.TranscriptDone("item_1", "Hello."),
        ),
        (
            {
                "type": "input_audio_buffer.speech_started",
                "event_id": "e",
                "audio_start_ms": 5,
                "item_id": "item_2",
            },
            ev.SpeechStarted(),
        ),
        (
            {"type": "response.created", "event_id": "e", "response": response},
            ev.ResponseCreated("resp_1", "r7"),
        ),
        (
            {
                "type": "conversation.item.truncated",
                "event_id": "e",
                "item_id": "item_1",
                "content_index": 0,
                "audio_end_ms": 640,
            },
            ev.ItemTruncated("item_1", 640),
        ),
        (
            {
                "type": "error",
                "event_id": "e",
                "error": {
                    "type": "invalid_request_error",
                    "code": "x",
                    "message": "m",
                    "event_id": "client_1",
                },
            },
            ev.ServerError("x", "m", "client_1"),
        ),
        (
            {
                "type": "response.function_call_arguments.done",
                "event_id": "e",
                "response_id": "resp_1",
                "item_id": "item_3",
                "output_index": 0,
                "call_id": "call_1",
                "arguments": "{}",
                "name": "end_call",
            },
            ev.FunctionCallDone("call_1", "end_call", "{}", "item_3", "resp_1"),
        ),
        ({"type": "rate_limits.updated", "event_id": "e", "rate_limits": []}, None),
    ]


@pytest.mark.parametrize("dialect", list(Dialect))
def test_server_events_parse_to_typed_events(dialect: Dialect) -> None:
    adapter = RealtimeAdapter(dialect)
    for wire, expected in _server_events(dialect):
        if dialect is Dialect.BETA and wire["type"] == "response.function_call_arguments.done":
            wire = {k: v for k, v in wire.items() if k != "name"}  # beta names it elsewhere
            expected = ev.FunctionCallDone("call_1", "", "{}", "item_3", "resp_1")
        validate_server_event(dialect, wire)
        want = [] if expected is None else [expected]
        assert adapter.parse(json.dumps(wire)) == want, wire["type"]


@pytest.mark.parametrize("dialect", list(Dialect))
def test_malformed_events_are_told_apart_from_others(dialect: Dialect) -> None:
    adapter = RealtimeAdapter(dialect)
    audio = wire_name(dialect, OutputEvent.AUDIO_DELTA)
    assert adapter.parse("not json") == []
    assert adapter.parse('{"no": "type"}') == []
    with pytest.raises(MalformedEvent) as bad_audio:
        adapter.parse(json.dumps({"type": audio, "item_id": "i", "delta": "!!"}))
    assert bad_audio.value.event_type == audio
    with pytest.raises(MalformedEvent):
        adapter.parse(json.dumps({"type": "response.created"}))
    # The other dialect's output names are not events here.
    other = Dialect.BETA if dialect is Dialect.GA else Dialect.GA
    assert adapter.parse(json.dumps({"type": wire_name(other, OutputEvent.AUDIO_DELTA)})) == []
