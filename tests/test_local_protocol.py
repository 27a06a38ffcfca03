"""Sans-I/O tests of the local realtime protocol, driven by a fake clock.

Every server event the protocol emits, and every client event the tests send as valid, is
checked against the ``openai`` SDK models (testbed/oracle.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from agent.audio.g711 import ulaw_decode
from agent.audio.levels import rms_dbfs
from agent.local.protocol import CHUNK_MS, LEAD_MS, RealtimeProtocol
from agent.local.replies import Reply, ReplyRequest
from agent.local.synthetic_voice import synthesize_voice
from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from testbed.oracle import validate_client_event, validate_server_event
from testbed.recording import appended_audio, stamped
from tests.local_helpers import (
    append_events,
    server_vad,
    session_update,
    silence,
    tone,
)

DIALECTS = [Dialect.GA, Dialect.BETA]


class Harness:
    """Drives a protocol with a fake clock, validating every event in both directions."""

    def __init__(self, dialect: Dialect, **kwargs: Any) -> None:
        self.dialect = dialect
        self.now = 1000.0
        self.protocol = RealtimeProtocol(dialect, **kwargs)
        self.events: list[dict[str, Any]] = []
        self.input_audio = bytearray()
        """Every appended chunk, decoded to PCM16 at the input rate of its time."""
        self._take(self.protocol.start())

    def _take(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for event in events:
            validate_server_event(self.dialect, event)
        self.events.extend(events)
        return events

    def send(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        validate_client_event(self.dialect, event)
        return self.send_raw(json.dumps(event))

    def send_raw(self, message: str | bytes) -> list[dict[str, Any]]:
        pcm = appended_audio(message, self.protocol.session.input_codec)
        if pcm is not None:
            self.input_audio += pcm
        return self._take(self.protocol.receive(message, self.now))

    def send_all(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for event in events:
            out += self.send(event)
        return out

    def advance(self, seconds: float, step: float = 0.01) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.now = min(self.now + step, end)
            out += self._take(self.protocol.poll(self.now))
        return out

    def until_done(self, limit_s: float = 10.0) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for _ in range(int(limit_s / 0.05)):
            out += self.advance(0.05)
            if any(e["type"] == "response.done" for e in out):
                return out
        raise AssertionError("response did not finish")

    def speak(self, samples: np.ndarray, **kwargs: Any) -> list[dict[str, Any]]:
        rate = kwargs.pop("rate", self.protocol.input_rate)
        return self.send_all(append_events(samples, rate=rate, **kwargs))


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_type(events, kind)
    assert len(found) == 1, f"expected one {kind}, got {types(events)}"
    return found[0]


def audio_delta(dialect: Dialect) -> str:
    return wire_name(dialect, OutputEvent.AUDIO_DELTA)


def sent_audio(events: list[dict[str, Any]], dialect: Dialect) -> bytes:
    return b"".join(base64.b64decode(e["delta"]) for e in of_type(events, audio_delta(dialect)))


def manual_turn(h: Harness) -> None:
    """Turn VAD off and commit a short user turn, so a response can be asked for by hand."""
    h.send(session_update(h.dialect, turn_detection=None))
    h.speak(tone(300))
    h.send({"type": "input_audio_buffer.commit"})


class ShortResponder:
    """A fixed 500 ms reply that records what it was asked."""

    def __init__(self) -> None:
        self.requests: list[ReplyRequest] = []

    def reply(self, request: ReplyRequest) -> Reply:
        self.requests.append(request)
        audio = tone(500, dbfs=-13)  # -16 on the old reference (tests/local_helpers.py)
        chunks: Iterator[bytes] = (
            audio[i : i + 1000].astype("<i2").tobytes() for i in range(0, len(audio), 1000)
        )
        return Reply(text="Short reply here.", audio=chunks)


# ---- session ---------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_session_created_is_a_full_session(dialect: Dialect) -> None:
    h = Harness(dialect)
    created = one(h.events, "session.created")
    session = created["session"]
    assert session["id"].startswith("sess_")
    assert created["event_id"].startswith("event_")
    if dialect is Dialect.GA:
        assert session["type"] == "realtime"
        assert session["audio"]["input"]["format"] == {"type": "audio/pcm", "rate": 24000}
        assert session["audio"]["input"]["turn_detection"]["type"] == "server_vad"
        assert session["output_modalities"] == ["audio"]
    else:
        assert session["input_audio_format"] == "pcm16"
        assert session["turn_detection"]["type"] == "server_vad"
        assert session["modalities"] == ["text", "audio"]


def test_ga_model_comes_from_the_query() -> None:
    h = Harness(Dialect.GA, model="gpt-realtime-mini")
    assert one(h.events, "session.created")["session"]["model"] == "gpt-realtime-mini"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_session_update_merges_and_echoes(dialect: Dialect) -> None:
    h = Harness(dialect)
    update = session_update(
        dialect,
        instructions="Be brief.",
        turn_detection=server_vad(threshold=0.7, silence_duration_ms=400),
        codec="pcmu",
    )
    session = one(h.send(update), "session.updated")["session"]
    assert session["instructions"] == "Be brief."
    if dialect is Dialect.GA:
        turn = session["audio"]["input"]["turn_detection"]
        assert session["audio"]["input"]["format"] == {"type": "audio/pcmu"}
        assert session["audio"]["output"]["voice"] == "alloy"  # untouched fields survive
    else:
        turn = session["turn_detection"]
        assert session["input_audio_format"] == "g711_ulaw"
        assert session["voice"] == "alloy"
    assert turn["threshold"] == 0.7
    assert turn["silence_duration_ms"] == 400
    assert turn["prefix_padding_ms"] == 300
    assert h.protocol.input_rate == 8000


@pytest.mark.parametrize("dialect", DIALECTS)
def test_turn_detection_null_disables_vad(dialect: Dialect) -> None:
    h = Harness(dialect)
    session = one(h.send(session_update(dialect, turn_detection=None)), "session.updated")
    turn = (
        session["session"]["audio"]["input"]["turn_detection"]
        if dialect is Dialect.GA
        else session["session"]["turn_detection"]
    )
    assert turn is None
    events = h.speak(np.concatenate([tone(800), silence(800)]))
    assert events == []
    committed = h.send({"type": "input_audio_buffer.commit"})
    assert types(committed)[0] == "input_audio_buffer.committed"
    assert "response.created" not in types(committed)


BAD_SESSIONS: list[tuple[Dialect, dict[str, Any], str]] = [
    (Dialect.GA, {"type": "realtime", "input_audio_format": "pcm16"}, "input_audio_format"),
    (Dialect.GA, {"instructions": "no type"}, "type"),
    (
        Dialect.GA,
        {"type": "realtime", "audio": {"input": {"format": {"type": "audio/opus"}}}},
        "audio.input.format.type",
    ),
    (Dialect.GA, {"type": "realtime", "output_modalities": ["text", "audio"]}, "output_modalities"),
    (Dialect.BETA, {"audio": {"input": {}}}, "audio"),
    (Dialect.BETA, {"input_audio_format": "opus"}, "input_audio_format"),
    (
        Dialect.BETA,
        {"turn_detection": {"type": "server_vad", "threshold": 2}},
        "turn_detection.threshold",
    ),
    (Dialect.BETA, {"turn_detection": {"type": "push_to_talk"}}, "turn_detection.type"),
]


@pytest.mark.parametrize(("dialect", "session", "param"), BAD_SESSIONS)
def test_session_update_rejects_bad_fields(
    dialect: Dialect, session: dict[str, Any], param: str
) -> None:
    h = Harness(dialect)
    before = h.protocol.session.wire()
    events = h.send_raw(json.dumps({"type": "session.update", "session": session}))
    error = one(events, "error")["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == f"session.{param}"
    assert h.protocol.session.wire() == before


# ---- VAD turns -------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("padding", "silence_ms"), [(300, 200), (0, 500)])
def test_vad_reports_turn_boundaries_on_the_audio_timeline(
    dialect: Dialect, padding: int, silence_ms: int
) -> None:
    h = Harness(dialect)
    vad = server_vad(
        prefix_padding_ms=padding, silence_duration_ms=silence_ms, create_response=False
    )
    h.send(session_update(dialect, turn_detection=vad))
    # Speech from 700 ms to 1900 ms of the appended audio; the wall clock never moves.
    events = h.speak(np.concatenate([silence(700), tone(1200), silence(1000)]))
    started = one(events, "input_audio_buffer.speech_started")
    stopped = one(events, "input_audio_buffer.speech_stopped")
    committed = one(events, "input_audio_buffer.committed")
    # The API reports the start including the prefix padding and the end including the
    # silence that confirmed it.
    assert abs(started["audio_start_ms"] - (700 - padding)) <= 100
    assert abs(stopped["audio_end_ms"] - (1900 + silence_ms)) <= 100
    assert started["item_id"] == stopped["item_id"] == committed["item_id"]
    assert committed["previous_item_id"] is None
    added = "conversation.item.added" if dialect is Dialect.GA else "conversation.item.created"
    item = one(events, added)["item"]
    assert item["id"] == committed["item_id"]
    assert item["role"] == "user"
    assert item["content"][0]["type"] == "input_audio"
    assert "response.created" not in types(events)
    user = h.protocol.item(committed["item_id"])
    assert user is not None
    expected_ms = stopped["audio_end_ms"] - started["audio_start_ms"]
    assert len(user.audio) // 2 == pytest.approx(expected_ms * 24, abs=24 * 20)


@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_vad_with_g711_input_uses_the_8k_timeline(codec: str) -> None:
    h = Harness(Dialect.GA)
    vad = server_vad(prefix_padding_ms=0, create_response=False)
    h.send(session_update(Dialect.GA, turn_detection=vad, codec=codec))
    audio = np.concatenate([silence(400, 8000), tone(600, 8000), silence(600, 8000)])
    events = h.speak(audio, rate=8000, codec=codec)
    assert abs(one(events, "input_audio_buffer.speech_started")["audio_start_ms"] - 400) <= 100
    assert abs(one(events, "input_audio_buffer.speech_stopped")["audio_end_ms"] - 1200) <= 100
    assert h.protocol.input_rate == 8000
    decoded = np.frombuffer(bytes(h.input_audio), dtype="<i2")
    assert len(decoded) == len(audio)
    # G.711 is lossy, but the decoded tone must keep its level.
    assert abs(rms_dbfs(decoded[3200:8000].tobytes()) - rms_dbfs(audio[3200:8000].tobytes())) < 0.5


@pytest.mark.parametrize("dialect", DIALECTS)
def test_two_turns_chain_previous_item_ids(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, turn_detection=server_vad(create_response=False)))
    turn = np.concatenate([tone(500), silence(600)])
    events = h.speak(np.concatenate([turn, turn]))
    first, second = of_type(events, "input_audio_buffer.committed")
    assert first["previous_item_id"] is None
    assert second["previous_item_id"] == first["item_id"]
    assert [item.id for item in h.protocol.items] == [first["item_id"], second["item_id"]]


# ---- responses -------------------------------------------------------------------------------


GA_RESPONSE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.added",
    "response.content_part.added",
]
BETA_RESPONSE = [
    "response.created",
    "response.output_item.added",
    "conversation.item.created",
    "response.content_part.added",
]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_committed_turn_streams_a_response(dialect: Dialect) -> None:
    h = Harness(dialect)
    events = h.speak(np.concatenate([silence(200), tone(800), silence(400)]))
    ga = dialect is Dialect.GA
    streamed = {
        wire_name(dialect, OutputEvent.AUDIO_DELTA),
        wire_name(dialect, OutputEvent.TRANSCRIPT_DELTA),
    }
    user_item = (
        ["conversation.item.added", "conversation.item.done"]
        if ga
        else ["conversation.item.created"]
    )
    expected_opening = [
        "input_audio_buffer.speech_started",
        "input_audio_buffer.speech_stopped",
        "input_audio_buffer.committed",
        *user_item,
        *(GA_RESPONSE if ga else BETA_RESPONSE),
    ]
    assert [t for t in types(events) if t not in streamed] == expected_opening
    assert types(events)[len(expected_opening)] in streamed  # streaming starts at once
    events += h.until_done()
    expected_closing = [
        wire_name(dialect, OutputEvent.AUDIO_DONE),
        wire_name(dialect, OutputEvent.TRANSCRIPT_DONE),
        "response.content_part.done",
        *(["conversation.item.done"] if ga else []),
        "response.output_item.done",
        "response.done",
    ]
    others = [t for t in types(events) if t not in streamed]
    assert others == expected_opening + expected_closing
    transcript_delta = wire_name(dialect, OutputEvent.TRANSCRIPT_DELTA)
    transcript_done = wire_name(dialect, OutputEvent.TRANSCRIPT_DONE)
    delta = wire_name(dialect, OutputEvent.AUDIO_DELTA)
    created = one(events, "response.created")["response"]
    done = one(events, "response.done")["response"]
    assert created["id"].startswith("resp_") and created["status"] == "in_progress"
    assert done["id"] == created["id"]
    assert done["status"] == "completed"
    item = done["output"][0]
    assert item["id"].startswith("item_")
    assert item["status"] == "completed"
    transcript = "".join(e["delta"] for e in of_type(events, transcript_delta))
    assert one(events, transcript_done)["transcript"] == transcript
    assert transcript == "You said something. I am the local test agent."
    assert item["content"][0]["transcript"] == transcript
    audio = np.frombuffer(sent_audio(events, dialect), dtype="<i2")
    assert np.array_equal(audio, synthesize_voice(transcript))
    assert 1.5 <= len(audio) / 24000 <= 3.0
    assert rms_dbfs(audio.tobytes()) > -22  # -25 on the old reference: audible
    # What the response cost, as the API counts it: its audio and transcript as output.
    usage = done["usage"]
    seconds = len(audio) / 24000
    output = usage["output_token_details"]
    assert output["audio_tokens"] == round(seconds * 20)
    assert output["text_tokens"] == -(-len(transcript) // 4)
    assert usage["output_tokens"] == output["audio_tokens"] + output["text_tokens"]
    assert usage["input_tokens"] > 0  # the instructions at least
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]
    # Deltas of one response all name its item; the item is the one reported as added.
    deltas = of_type(events, delta)
    assert {d["item_id"] for d in deltas} == {item["id"]}
    assert {d["response_id"] for d in deltas} == {done["id"]}
    ids = [e["event_id"] for e in h.events]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_audio_is_paced_on_the_clock_with_a_bounded_lead(dialect: Dialect) -> None:
    h = Harness(dialect)
    manual_turn(h)
    start = h.now
    events = h.send({"type": "response.create"})
    chunk_bytes = 24000 * CHUNK_MS // 1000 * 2
    lead = len(sent_audio(events, dialect)) / 48
    assert 0 < lead <= LEAD_MS + CHUNK_MS
    for elapsed in (0.3, 0.8, 1.3):
        events += h.advance(start + elapsed - h.now)
        sent_ms = len(sent_audio(events, dialect)) / 48
        assert elapsed * 1000 <= sent_ms <= elapsed * 1000 + LEAD_MS + CHUNK_MS
    deltas = of_type(events, audio_delta(dialect))
    assert all(len(base64.b64decode(d["delta"])) == chunk_bytes for d in deltas)
    assert "response.done" not in types(events)
    events += h.until_done()
    total_s = len(sent_audio(events, dialect)) / 48000
    # Done comes when the audio has been handed out, a lead ahead of real time.
    assert h.now - start == pytest.approx(total_s - LEAD_MS / 1000, abs=0.1)


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("codec", ["pcmu", "pcma"])
def test_g711_output_is_8k_companded(dialect: Dialect, codec: str) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, codec=codec, turn_detection=None))
    h.speak(tone(300, 8000), rate=8000, codec=codec)
    h.send({"type": "input_audio_buffer.commit"})
    events = h.send({"type": "response.create"}) + h.until_done()
    deltas = [base64.b64decode(d["delta"]) for d in of_type(events, audio_delta(dialect))]
    assert all(len(d) == 8000 * CHUNK_MS // 1000 for d in deltas[:-1])
    wire = b"".join(deltas)
    decoder = ulaw_decode if codec == "pcmu" else None
    if decoder is None:
        from agent.audio.g711 import alaw_decode as decoder
    pcm = np.frombuffer(decoder(wire), dtype="<i2")
    assert 1.5 <= len(pcm) / 8000 <= 3.0
    assert rms_dbfs(pcm.tobytes()) > -22  # -25 on the old reference: audible
    done = one(events, "response.done")["response"]
    if dialect is Dialect.GA:
        assert done["audio"]["output"]["format"] == {"type": f"audio/{codec}"}
    else:
        assert done["output_audio_format"] == ("g711_ulaw" if codec == "pcmu" else "g711_alaw")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_response_create_uses_instructions_and_the_user_text(dialect: Dialect) -> None:
    responder = ShortResponder()
    h = Harness(dialect, responder=responder)
    h.send(session_update(dialect, turn_detection=None, instructions="Session rules."))
    text_part = "input_text"
    h.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": text_part, "text": "What time is it?"}],
            },
        }
    )
    h.send({"type": "response.create", "response": {"instructions": "Answer in French."}})
    h.until_done()
    h.send({"type": "response.create"})
    h.until_done()
    first, second = responder.requests
    assert first.instructions == "Answer in French."
    assert second.instructions == "Session rules."
    assert first.user_text == "What time is it?"
    assert first.user_audio == b""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_synthetic_responder_echoes_user_text(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(
        {
            "type": "conversation.item.create",
            "item": {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "hello there"}],
            },
        }
    )
    events = h.send({"type": "response.create"}) + h.until_done()
    done = wire_name(dialect, OutputEvent.TRANSCRIPT_DONE)
    assert one(events, done)["transcript"] == 'You said: "hello there". I am the local test agent.'


@pytest.mark.parametrize("dialect", DIALECTS)
def test_user_audio_reaches_the_responder(dialect: Dialect) -> None:
    responder = ShortResponder()
    h = Harness(dialect, responder=responder)
    h.send(session_update(dialect, turn_detection=server_vad(prefix_padding_ms=0)))
    h.speak(np.concatenate([silence(200), tone(600), silence(400)]))
    (request,) = responder.requests
    assert request.user_audio_rate == 24000
    assert request.user_text is None
    assert abs(len(request.user_audio) / 48 - (600 + 200)) <= 100


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_only_response(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, modalities=["text"], turn_detection=None))
    events = h.send({"type": "response.create"})
    text_delta = wire_name(dialect, OutputEvent.TEXT_DELTA)
    text_done = wire_name(dialect, OutputEvent.TEXT_DONE)
    assert of_type(events, audio_delta(dialect)) == []
    text = "".join(e["delta"] for e in of_type(events, text_delta))
    assert one(events, text_done)["text"] == text
    done = one(events, "response.done")["response"]
    content = done["output"][0]["content"][0]
    assert content["type"] == ("output_text" if dialect is Dialect.GA else "text")
    assert content["text"] == text
    assert not h.protocol.response_active


@pytest.mark.parametrize("dialect", DIALECTS)
def test_second_response_while_active_is_rejected(dialect: Dialect) -> None:
    h = Harness(dialect)
    manual_turn(h)
    h.send({"type": "response.create"})
    error = one(h.send({"type": "response.create"}), "error")["error"]
    assert error["code"] == "conversation_already_has_active_response"
    assert h.protocol.response_active


# ---- cancel, interrupt, truncate ---------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_response_cancel(dialect: Dialect) -> None:
    h = Harness(dialect)
    manual_turn(h)
    h.send({"type": "response.create"})
    h.advance(0.5)
    events = h.send({"type": "response.cancel"})
    done = one(events, "response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"] == {"type": "cancelled", "reason": "client_cancelled"}
    assert done["output"][0]["status"] == "incomplete"
    assert of_type(events, audio_delta(dialect)) == []
    assert h.advance(1.0) == []
    error = one(h.send({"type": "response.cancel"}), "error")["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == "response_cancel_not_active"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cancel_without_a_response_is_an_error(dialect: Dialect) -> None:
    h = Harness(dialect)
    event = {"type": "response.cancel", "event_id": "client_1"}
    error = one(h.send(event), "error")["error"]
    assert error["code"] == "response_cancel_not_active"
    assert error["event_id"] == "client_1"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_speech_interrupts_a_streaming_response(dialect: Dialect) -> None:
    h = Harness(dialect)
    events = h.speak(np.concatenate([tone(500), silence(400)]))
    assert h.protocol.response_active
    events = h.speak(tone(200))
    order = types(events)
    assert order.index("input_audio_buffer.speech_started") < order.index("response.done")
    done = one(events, "response.done")["response"]
    assert done["status"] == "cancelled"
    assert done["status_details"]["reason"] == "turn_detected"
    assert not h.protocol.response_active


@pytest.mark.parametrize("dialect", DIALECTS)
def test_interrupt_response_false_lets_the_response_finish(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, turn_detection=server_vad(interrupt_response=False)))
    h.speak(np.concatenate([tone(500), silence(400)]))
    events = h.speak(np.concatenate([tone(300), silence(400)]))
    assert "input_audio_buffer.speech_started" in types(events)
    assert "input_audio_buffer.committed" in types(events)
    assert "response.done" not in types(events)
    # No second response is started over the running one.
    assert len(of_type(h.events, "response.created")) == 1
    done = one(h.until_done(), "response.done")["response"]
    assert done["status"] == "completed"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_create_response_false_only_commits(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, turn_detection=server_vad(create_response=False)))
    events = h.speak(np.concatenate([tone(500), silence(400)]))
    assert "input_audio_buffer.committed" in types(events)
    assert "response.created" not in types(events)


def _streaming_item(h: Harness) -> str:
    manual_turn(h)
    events = h.send({"type": "response.create"})
    return one(events, "response.output_item.added")["item"]["id"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_truncate_while_streaming_stops_the_item(dialect: Dialect) -> None:
    h = Harness(dialect)
    item_id = _streaming_item(h)
    h.advance(0.4)
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 300,
    }
    events = h.send(truncate)
    assert types(events)[-2:] == ["response.done", "conversation.item.truncated"]
    assert one(events, "response.done")["response"]["status"] == "cancelled"
    truncated = one(events, "conversation.item.truncated")
    assert (truncated["item_id"], truncated["content_index"], truncated["audio_end_ms"]) == (
        item_id,
        0,
        300,
    )
    assert h.advance(0.5) == []
    item = h.protocol.item(item_id)
    assert item is not None
    assert item.audio_ms == 300
    assert item.data["content"][0]["transcript"] == ""
    retrieved = one(
        h.send({"type": "conversation.item.retrieve", "item_id": item_id}),
        "conversation.item.retrieved",
    )
    assert retrieved["item"]["content"][0]["transcript"] == ""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_truncate_beyond_the_sent_audio_is_rejected(dialect: Dialect) -> None:
    h = Harness(dialect)
    item_id = _streaming_item(h)
    h.advance(0.4)
    sent_ms = len(sent_audio(h.events, dialect)) / 48
    truncate = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": int(sent_ms) + 500,
    }
    error = one(h.send(truncate), "error")["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "audio_end_ms"
    assert f"Audio content of {int(sent_ms)}ms is already shorter than" in error["message"]
    assert h.protocol.response_active
    assert one(h.until_done(), "response.done")["response"]["status"] == "completed"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_truncate_after_completion_keeps_the_cut(dialect: Dialect) -> None:
    h = Harness(dialect)
    item_id = _streaming_item(h)
    h.until_done()
    events = h.send(
        {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 1000,
        }
    )
    assert types(events) == ["conversation.item.truncated"]
    item = h.protocol.item(item_id)
    assert item is not None and item.audio_ms == 1000
    # Truncating further than the (now shorter) item is rejected.
    again = {
        "type": "conversation.item.truncate",
        "item_id": item_id,
        "content_index": 0,
        "audio_end_ms": 1200,
    }
    assert one(h.send(again), "error")["error"]["param"] == "audio_end_ms"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_truncate_rejects_unknown_and_user_items(dialect: Dialect) -> None:
    h = Harness(dialect)
    manual_turn(h)
    user_id = h.protocol.items[-1].id
    for item_id, code in (
        ("item_missing", "item_truncate_invalid_item_id"),
        (user_id, "unsupported_content_type"),
    ):
        event = {
            "type": "conversation.item.truncate",
            "item_id": item_id,
            "content_index": 0,
            "audio_end_ms": 0,
        }
        assert one(h.send(event), "error")["error"]["code"] == code


# ---- items -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_function_call_output_item_is_acknowledged(dialect: Dialect) -> None:
    h = Harness(dialect)
    manual_turn(h)
    user_id = h.protocol.items[-1].id
    item = {"type": "function_call_output", "call_id": "call_1", "output": '{"ok": true}'}
    events = h.send({"type": "conversation.item.create", "item": item})
    if dialect is Dialect.GA:
        assert types(events) == ["conversation.item.added", "conversation.item.done"]
    else:
        assert types(events) == ["conversation.item.created"]
    echoed = events[0]
    assert echoed["previous_item_id"] == user_id
    assert echoed["item"]["call_id"] == "call_1"
    assert echoed["item"]["output"] == '{"ok": true}'
    assert echoed["item"]["id"].startswith("item_")


@pytest.mark.parametrize("dialect", DIALECTS)
def test_item_create_honours_previous_item_id_and_rejects_bad_items(dialect: Dialect) -> None:
    h = Harness(dialect)
    message = {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": "a"}],
    }
    first = h.send({"type": "conversation.item.create", "item": {**message, "id": "item_a"}})
    at_root = h.send(
        {
            "type": "conversation.item.create",
            "previous_item_id": "root",
            "item": {**message, "id": "item_b"},
        }
    )
    assert first[0]["previous_item_id"] is None
    assert at_root[0]["previous_item_id"] is None
    assert [item.id for item in h.protocol.items] == ["item_b", "item_a"]
    create = "conversation.item.create"
    bad = [
        {"type": create},
        {"type": create, "item": {"type": "message", "role": "robot", "content": []}},
        {"type": create, "item": {"type": "function_call_output", "call_id": "c"}},
        {"type": create, "item": {"type": "telepathy"}},
        {"type": create, "item": {**message, "id": "item_a"}},
        {"type": create, "previous_item_id": "item_zz", "item": message},
    ]
    for event in bad:
        error = one(h.send_raw(json.dumps(event)), "error")["error"]
        assert error["type"] == "invalid_request_error"
    assert len(h.protocol.items) == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_item_delete_and_retrieve(dialect: Dialect) -> None:
    h = Harness(dialect)
    manual_turn(h)
    item_id = h.protocol.items[-1].id
    retrieved = one(
        h.send({"type": "conversation.item.retrieve", "item_id": item_id}),
        "conversation.item.retrieved",
    )
    assert retrieved["item"]["id"] == item_id
    deleted = h.send({"type": "conversation.item.delete", "item_id": item_id})
    assert one(deleted, "conversation.item.deleted")["item_id"] == item_id
    assert h.protocol.items == []
    error = one(h.send({"type": "conversation.item.delete", "item_id": item_id}), "error")
    assert error["error"]["code"] == "item_delete_invalid_item_id"


# ---- input buffer ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_commit_needs_100ms_and_clear_empties_the_buffer(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, turn_detection=None))
    h.speak(tone(60))
    error = one(h.send({"type": "input_audio_buffer.commit"}), "error")["error"]
    assert error["code"] == "input_audio_buffer_commit_empty"
    h.speak(tone(200))
    assert types(h.send({"type": "input_audio_buffer.clear"})) == ["input_audio_buffer.cleared"]
    assert one(h.send({"type": "input_audio_buffer.commit"}), "error")
    # Everything appended is still recorded for the test, cleared or not.
    assert len(h.input_audio) == (60 + 200) * 48


@pytest.mark.parametrize("dialect", DIALECTS)
def test_clear_during_speech_forgets_the_turn(dialect: Dialect) -> None:
    h = Harness(dialect)
    h.send(session_update(dialect, turn_detection=server_vad(create_response=False)))
    assert "input_audio_buffer.speech_started" in types(h.speak(tone(400)))
    h.send({"type": "input_audio_buffer.clear"})
    assert h.speak(silence(800)) == []


# ---- malformed input -------------------------------------------------------------------------


MALFORMED: list[str | bytes] = [
    "not json",
    "[1, 2, 3]",
    "42",
    b"\x00\x01binary",
    json.dumps({"no": "type"}),
    json.dumps({"type": 7}),
    json.dumps({"type": "response.dance"}),
    json.dumps({"type": "output_audio_buffer.clear"}),
    json.dumps({"type": "input_audio_buffer.append"}),
    json.dumps({"type": "input_audio_buffer.append", "audio": "***not base64***"}),
    json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(b"abc").decode()}),
    json.dumps({"type": "session.update"}),
    json.dumps({"type": "session.update", "session": "fast"}),
    json.dumps({"type": "response.create", "response": "now"}),
    json.dumps({"type": "response.create", "response": {"instructions": 5}}),
    json.dumps({"type": "conversation.item.truncate", "item_id": "x"}),
    json.dumps({"type": "conversation.item.truncate", "item_id": 1, "content_index": 0}),
]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_malformed_input_gets_one_error_and_the_session_lives_on(dialect: Dialect) -> None:
    h = Harness(dialect)
    for message in MALFORMED:
        events = h.send_raw(message)
        assert types(events) == ["error"], message
        assert events[0]["error"]["type"] == "invalid_request_error"
        assert events[0]["error"]["message"]
    assert not h.protocol.response_active
    assert types(h.send(session_update(dialect, instructions="still here"))) == ["session.updated"]


def test_unknown_event_error_names_the_supported_types() -> None:
    h = Harness(Dialect.GA)
    error = one(h.send_raw(json.dumps({"type": "response.dance"})), "error")["error"]
    assert error["code"] == "invalid_value"
    assert error["param"] == "type"
    assert "'response.create'" in error["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_injected_events_are_stamped_like_the_servers(dialect: Dialect) -> None:
    # Injection is the test recorder's (testbed/recording.py); the server has no such hook.
    injected = {"type": "input_audio_buffer.speech_started", "audio_start_ms": 5, "item_id": "x"}
    event = stamped(injected)
    assert event["event_id"].startswith("event_")
    assert event == {**injected, "event_id": event["event_id"]}
    validate_server_event(dialect, event)


class BrokenResponder:
    """Fails to start, or fails after the first chunk, like a flaky TTS backend might."""

    def __init__(self, fail_at_start: bool) -> None:
        self.fail_at_start = fail_at_start

    def reply(self, request: ReplyRequest) -> Reply:
        if self.fail_at_start:
            raise RuntimeError("tts unavailable")

        def audio() -> Iterator[bytes]:
            yield tone(100).astype("<i2").tobytes()
            raise RuntimeError("tts stream broke")

        return Reply(text="Half a", audio=audio())


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_responder_that_cannot_start_is_a_server_error(dialect: Dialect) -> None:
    h = Harness(dialect, responder=BrokenResponder(fail_at_start=True))
    error = one(h.send({"type": "response.create"}), "error")["error"]
    assert error["type"] == "server_error"
    assert "tts unavailable" in error["message"]
    assert not h.protocol.response_active


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_responder_failing_mid_stream_fails_the_response(dialect: Dialect) -> None:
    h = Harness(dialect, responder=BrokenResponder(fail_at_start=False))
    events = h.send({"type": "response.create"}) + h.advance(0.5)
    done = one(events, "response.done")["response"]
    assert done["status"] == "failed"
    assert done["status_details"]["error"]["message"] == "tts stream broke"
    assert len(sent_audio(events, dialect)) == 100 * 48
    assert not h.protocol.response_active
    assert types(h.send({"type": "response.create"}))[0] == "response.created"
