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


def _done(response_id: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    response = {"id": response_id, "object": "realtime.response", "status": "completed",
                "output": [], "usage": usage}  # fmt: skip
    return {"type": "response.done", "event_id": f"event_{response_id}", "response": response}


@pytest.mark.parametrize("dialect", list(Dialect))
def test_response_usage_is_summed_over_the_session(dialect: Dialect) -> None:
    """Each response.done's usage is that response's; the adapter reports the session's
    total so far (a snapshot, as GPT-Live's usage is), flattened."""
    adapter = RealtimeAdapter(dialect)
    first = {"total_tokens": 130, "input_tokens": 90, "output_tokens": 40,
             "input_token_details": {"text_tokens": 60, "audio_tokens": 30, "cached_tokens": 0},
             "output_token_details": {"text_tokens": 8, "audio_tokens": 32}}  # fmt: skip
    second = {"total_tokens": 200, "input_tokens": 170, "output_tokens": 30,
              "input_token_details": {"text_tokens": 70, "audio_tokens": 100,
                                      "cached_tokens": 90},
              "output_token_details": {"text_tokens": 6, "audio_tokens": 24}}  # fmt: skip
    if dialect is Dialect.GA:
        second["input_token_details"]["cached_tokens_details"] = {  # type: ignore[index]
            "text_tokens": 60,
            "audio_tokens": 30,
        }
    snapshots = []
    for wire in (_done("resp_1", first), _done("resp_2", None), _done("resp_3", second)):
        validate_server_event(dialect, wire)
        events = adapter.parse(json.dumps(wire))
        assert events[0] == ev.ResponseDone(wire["response"]["id"])
        snapshots += [e.usage for e in events if isinstance(e, ev.UsageUpdated)]
    assert len(snapshots) == 2  # a response without usage reports none
    assert snapshots[0]["total_tokens"] == 130 and snapshots[0]["output_audio_tokens"] == 32
    total = snapshots[1]
    assert (total["total_tokens"], total["input_tokens"], total["output_tokens"]) == (330, 260, 70)
    assert total["input_audio_tokens"] == 130 and total["input_cached_tokens"] == 90
    assert total["output_text_tokens"] == 14
    if dialect is Dialect.GA:
        assert total["input_cached_text_tokens"] == 60
    # A new session (a new adapter) starts from nothing.
    fresh = RealtimeAdapter(dialect).parse(json.dumps(_done("resp_4", first)))
    assert [e.usage["total_tokens"] for e in fresh if isinstance(e, ev.UsageUpdated)] == [130]
