"""Sans-I/O tests of the local GPT-Live protocol, driven by a fake clock.

Every server event the protocol emits validates against ``openai.types.live.ServerEvent``, and
every client event the tests send as valid against ``openai.types.live.ClientEvent``
(``testbed.oracle``: the event's own model, strictly, so an error names its field).
"""

from __future__ import annotations

import base64
import json
import time
from concurrent.futures import Future
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from agent.audio.g711 import ulaw_decode
from agent.audio.levels import rms_dbfs
from agent.local.live.caller_input import MAX_APPEND_CHARS
from agent.local.live.protocol import LiveProtocol
from agent.local.live.session_config import DEFAULT_INSTRUCTIONS, MAX_HISTORY_MESSAGES
from agent.local.replies import Reply, ReplyRequest
from testbed.oracle import (
    LIVE,
    client_event_types,
    server_event_types,
    validate_client_event,
    validate_server_event,
)
from testbed.scripted import ScriptedVoice, scripted_backend
from tests.local_helpers import silence, tone, wire_audio

# ---- the oracle ----------------------------------------------------------------------------------


def validate_live_server_event(event: dict[str, Any]) -> None:
    assert event.get("type") in server_event_types(LIVE), event.get("type")
    validate_server_event(LIVE, event)


def validate_live_client_event(event: dict[str, Any]) -> None:
    assert event.get("type") in client_event_types(LIVE), event.get("type")
    validate_client_event(LIVE, event)


# ---- a harness with a fake clock -----------------------------------------------------------------

FRAME_MS = 20
SYNTHETIC_REPLY = "You said something. I am the local test agent."
SPEECH_END_MS = 500
"""The Live VAD's silence duration: a turn ends this long after the caller stops."""


class Harness:
    """Drives a ``LiveProtocol`` with a fake clock, validating every event both ways."""

    def __init__(self, **kwargs: Any) -> None:
        self.now = 1000.0
        self.protocol = LiveProtocol(**kwargs)
        self.events: list[dict[str, Any]] = []
        assert self.protocol.start() == []

    def _take(self, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for event in events:
            validate_live_server_event(event)
        self.events.extend(events)
        return events

    def send(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        validate_live_client_event(event)
        return self.send_raw(json.dumps(event))

    def send_raw(self, message: str | bytes) -> list[dict[str, Any]]:
        return self._take(self.protocol.receive(message, self.now))

    def start(self, **session: Any) -> dict[str, Any]:
        events = self.send({"type": "session.start", "session": {"model": "gpt-live-1", **session}})
        return one(events, "session.started")

    def advance(self, seconds: float, step: float = 0.01) -> list[dict[str, Any]]:
        """Let ``seconds`` pass with no client frame, polling every ``step``."""
        out: list[dict[str, Any]] = []
        start, steps = self.now, max(round(seconds / step), 1)
        for index in range(1, steps + 1):
            # Computed, not accumulated: the clock lands exactly on ``start + seconds``.
            self.now = start + seconds * index / steps
            out += self._take(self.protocol.poll(self.now))
        return out

    def stream(
        self, samples: np.ndarray, codec: str = "pcm16", rate: int = 24000
    ) -> list[tuple[float, list[dict[str, Any]]]]:
        """Append ``samples`` in real time, a 20 ms frame per 20 ms of the clock; the time of
        each frame and the events its ``receive`` returned."""
        step = rate * FRAME_MS // 1000
        out: list[tuple[float, list[dict[str, Any]]]] = []
        for start in range(0, len(samples), step):
            self.now += FRAME_MS / 1000
            audio = wire_audio(samples[start : start + step], codec)
            out.append(
                (self.now, self.send({"type": "session.input_audio.append", "audio": audio}))
            )
        return out

    def speak(
        self, samples: np.ndarray, codec: str = "pcm16", rate: int = 24000
    ) -> list[dict[str, Any]]:
        return [event for _, events in self.stream(samples, codec, rate) for event in events]


def types(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def of_type(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [event for event in events if event["type"] == kind]


def one(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_type(events, kind)
    assert len(found) == 1, f"expected one {kind}, got {types(events)}"
    return found[0]


def audio_of(events: list[dict[str, Any]]) -> bytes:
    return b"".join(
        base64.b64decode(e["delta"]) for e in of_type(events, "session.output_audio.delta")
    )


def said(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in of_type(events, "session.output_transcript.delta"))


def heard(events: list[dict[str, Any]]) -> str:
    return "".join(e["delta"] for e in of_type(events, "session.input_transcript.delta"))


def turn(rate: int = 24000, speech_ms: int = 1200) -> np.ndarray:
    """Silence, a caller speaking ``speech_ms``, and the silence that ends the turn."""
    return np.concatenate(
        [silence(200, rate), tone(speech_ms, rate), silence(SPEECH_END_MS + 100, rate)]
    )


def context(
    kind: str, content: str, delegation_id: str | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "type": f"session.{kind}.append",
        "delegation_id": delegation_id,
        "content": content,
        **extra,
    }


# ---- test doubles --------------------------------------------------------------------------------

WORDS = [
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
]


class CountingTranscriber:
    """Hears a word of ``WORDS`` per 200 ms of audio, so every partial is a prefix of the final."""

    def __init__(self) -> None:
        self.jobs: list[float] = []
        """The length (s) of each audio it was given."""

    def submit(self, pcm: bytes, rate: int) -> Future[str]:
        seconds = len(pcm) / 2 / rate
        self.jobs.append(seconds)
        future: Future[str] = Future()
        future.set_result(" ".join(WORDS[: int(seconds / 0.2)]))
        return future


class LongResponder:
    """A 4 s reply, longer than any lead the tests set."""

    def reply(self, request: ReplyRequest) -> Reply:
        return Reply("A long reply.", iter([tone(4000, dbfs=-13).astype("<i2").tobytes()]))


def scripted(heard: str = "", **kwargs: Any) -> tuple[Harness, ScriptedVoice]:
    """A harness whose responder is the shipped script (hearing ``heard`` in every turn),
    offered every function it names."""
    backend, voices = scripted_backend(heard)
    voice = backend.responder_factory()
    assert isinstance(voice, ScriptedVoice) and voices == [voice]
    harness = Harness(
        responder=voice,
        transcriber=backend.transcriber,
        tools=backend.delegable_tools,
        **kwargs,
    )
    return harness, voice


# ---- starting a session --------------------------------------------------------------------------


def test_nothing_is_sent_until_session_start_and_other_events_are_refused_before_it() -> None:
    h = Harness()
    assert h.advance(1.0) == []
    assert h.protocol.next_deadline() is None
    append = {
        "type": "session.input_audio.append",
        "audio": wire_audio(silence(20)),
        "event_id": "evt_early",
    }
    error = one(h.send(append), "error")
    assert error["error"]["code"] == "session_not_started"
    assert error["client_event_id"] == error["error"]["client_event_id"] == "evt_early"
    # The connection is kept: the session still starts.
    assert h.start()["session"]["status"] == "active"


def test_session_started_echoes_the_requested_pcmu_format_and_startup_history() -> None:
    h = Harness(max_session_s=600)
    history = [
        {
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "I'm calling about order A42."}],
        },
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Let me check order A42."}],
        },
    ]
    event = {
        "type": "session.start",
        "event_id": "evt_start",
        "session": {
            "model": "gpt-live-1.1",
            "instructions": "You answer phone calls for Acme.",
            "audio": {"format": {"type": "audio/pcmu", "rate": 8000}, "output": {"voice": "cedar"}},
            "delegation": {"type": "client", "acknowledgement_delay_ms": 400},
            "input": history,
            "store": False,
        },
    }
    started = one(h.send(event), "session.started")
    assert started["client_event_id"] == "evt_start"
    session = started["session"]
    assert session["id"].startswith("sess_")
    assert session["model"] == "gpt-live-1.1"
    assert session["status"] == "active"
    assert session["audio"] == {
        "format": {"type": "audio/pcmu", "rate": 8000},
        "output": {"voice": "cedar"},
    }
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 400}
    assert session["instructions"] == "You answer phone calls for Acme."
    assert session["input"] == history
    assert abs(session["expires_at"] - (time.time() + 600)) < 5
    assert [(m.role, m.text) for m in h.protocol.history] == [
        ("user", "I'm calling about order A42."),
        ("assistant", "Let me check order A42."),
    ]
    assert h.protocol.input_rate == 8000


def test_session_defaults_are_resolved() -> None:
    session = Harness().start()["session"]
    assert session["audio"] == {
        "format": {"type": "audio/pcm", "rate": 24000},
        "output": {"voice": "marin"},
    }
    assert session["delegation"] == {"type": "client", "acknowledgement_delay_ms": 0}
    assert session["instructions"] == DEFAULT_INSTRUCTIONS
    assert session["input"] == [] and session["store"] is False


def _message(role: str, part: str, text: str = "hi") -> dict[str, Any]:
    return {"type": "message", "role": role, "content": [{"type": part, "text": text}]}


BAD_STARTS: list[tuple[dict[str, Any], str, str]] = [
    ({"instructions": "no model"}, "session.model", "missing_required_parameter"),
    ({"model": ""}, "session.model", "invalid_value"),
    ({"model": "m", "voice": "marin"}, "session.voice", "unknown_parameter"),
    (
        {"model": "m", "audio": {"format": {"type": "audio/pcm", "rate": 8000}}},
        "session.audio.format.rate",
        "invalid_value",
    ),
    (
        {"model": "m", "audio": {"format": {"type": "audio/pcmu"}}},
        "session.audio.format.rate",
        "missing_required_parameter",
    ),
    (
        {"model": "m", "audio": {"format": {"type": "audio/opus", "rate": 48000}}},
        "session.audio.format.type",
        "invalid_value",
    ),
    (
        {"model": "m", "audio": {"format": {"type": "audio/pcm", "rate": 24000, "channels": 1}}},
        "session.audio.format.channels",
        "unknown_parameter",
    ),
    (
        {"model": "m", "audio": {"output": {"voice": "marin", "speed": 1.2}}},
        "session.audio.output.speed",
        "unknown_parameter",
    ),
    (
        {"model": "m", "delegation": {"type": "responses", "responses": {"model": "gpt-5"}}},
        "session.delegation.type",
        "unsupported_value",
    ),
    (
        {"model": "m", "delegation": {"type": "client", "acknowledgement_delay_ms": -1}},
        "session.delegation.acknowledgement_delay_ms",
        "invalid_value",
    ),
    (
        {"model": "m", "input": [_message("user", "input_text")] * (MAX_HISTORY_MESSAGES + 1)},
        "session.input",
        "array_above_max_length",
    ),
    (
        {"model": "m", "input": [_message("user", "output_text")]},
        "session.input[0].content[0].type",
        "invalid_value",
    ),
    (
        {"model": "m", "input": [_message("system", "input_text")]},
        "session.input[0].role",
        "invalid_value",
    ),
    (
        {"model": "m", "input": [{**_message("user", "input_text"), "content": []}]},
        "session.input[0].content",
        "invalid_value",
    ),
    ({"model": "m", "instructions": 7}, "session.instructions", "invalid_type"),
    ({"model": "m", "store": "yes"}, "session.store", "invalid_type"),
    ({"model": "m", "client": {"data_channel": {}}}, "session.client", "unsupported_parameter"),
    ({"model": "m", "triggers": [{"type": "decisions"}]}, "session.triggers", "unsupported_value"),
]


@pytest.mark.parametrize(("session", "param", "code"), BAD_STARTS)
def test_session_start_is_as_strict_as_the_real_server(
    session: dict[str, Any], param: str, code: str
) -> None:
    h = Harness()
    events = h.send_raw(
        json.dumps({"type": "session.start", "session": session, "event_id": "evt_1"})
    )
    error = one(events, "error")["error"]
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["client_event_id"] == "evt_1"
    assert h.protocol.config is None
    # Nothing was taken: a good start still works.
    assert h.start()["session"]["model"] == "gpt-live-1"


def test_responses_delegation_is_refused_as_client_only() -> None:
    h = Harness()
    event = {
        "type": "session.start",
        "session": {
            "model": "m",
            "delegation": {"type": "responses", "responses": {"model": "gpt-5"}},
        },
    }
    error = one(h.send(event), "error")["error"]
    assert "client delegation only" in error["message"]


def test_a_second_session_start_is_an_error() -> None:
    h = Harness()
    first = h.start()
    error = one(h.send({"type": "session.start", "session": {"model": "gpt-live-1"}}), "error")
    assert error["error"]["code"] == "session_already_started"
    assert h.protocol.config is not None and h.protocol.config.id == first["session"]["id"]


# ---- the caller's turns --------------------------------------------------------------------------


def test_a_spoken_turn_gets_transcript_deltas_then_an_audible_reply_in_the_session_codec() -> None:
    transcriber = CountingTranscriber()
    h = Harness(transcriber=transcriber)
    h.start(audio={"format": {"type": "audio/pcmu", "rate": 8000}})
    events = h.speak(turn(8000), "pcmu", 8000) + h.advance(4.0)

    deltas = of_type(events, "session.input_transcript.delta")
    assert len(deltas) >= 3  # partials while the caller spoke, then the rest
    # Several partial jobs ran while the caller spoke (every 400 ms of their speech), then
    # one for the whole turn; the deltas add up to the final transcript.
    assert len(transcriber.jobs) >= 3
    final = " ".join(WORDS[: int(transcriber.jobs[-1] / 0.2)])
    assert heard(events) == final
    # They tile the turn on the input timeline, up to the end of the silence that closed it.
    assert deltas[0]["start_ms"] == 0  # 200 ms in, less the 300 ms prefix padding
    for before, after in pairwise(deltas):
        assert before["end_ms"] == after["start_ms"]
    assert deltas[-1]["end_ms"] == pytest.approx(200 + 1200 + SPEECH_END_MS, abs=40)
    # The caller's words come before the agent's answer.
    kinds = types(events)
    assert kinds.index("session.output_audio.delta") > max(
        i for i, k in enumerate(kinds) if k == "session.input_transcript.delta"
    )

    chunks = of_type(events, "session.output_audio.delta")
    assert all(set(chunk) == {"type", "delta"} for chunk in chunks)  # bare on the primary WebSocket
    mulaw = audio_of(events)
    assert len(mulaw) / 8000 > 1.4  # one byte a sample: it is mu-law at 8 kHz
    assert all(len(base64.b64decode(c["delta"])) <= 8000 * 40 // 1000 for c in chunks)
    assert rms_dbfs(ulaw_decode(mulaw)) > -30
    assert said(events) == SYNTHETIC_REPLY


def test_without_a_transcriber_there_is_no_caller_transcript() -> None:
    h = Harness()
    h.start()
    events = h.speak(turn()) + h.advance(3.0)
    assert of_type(events, "session.input_transcript.delta") == []
    assert len(audio_of(events)) / 2 / 24000 > 1.4


def test_the_reply_request_carries_the_turn_audio_and_its_transcript() -> None:
    h, voice = scripted("what are your opening hours")
    h.start(audio={"format": {"type": "audio/pcm", "rate": 16000}})
    events = h.speak(turn(16000), rate=16000) + h.advance(4.0)
    (request,) = voice.requests
    assert request.user_audio_rate == 16000
    # From the session's start (the prefix padding reaches back past it) to the silence
    # that ended the turn.
    assert len(request.user_audio) / 2 / 16000 == pytest.approx(0.2 + 1.2 + 0.5, abs=0.02)
    assert (
        request.user_transcript is not None
        and request.user_transcript() == "what are your opening hours"
    )
    assert (
        said(events)
        == "We are open Monday to Saturday, from nine in the morning to six in the evening."
    )
    assert len(audio_of(events)) / 2 / 16000 > 1.4  # PCM16 at the session's 16 kHz


def test_output_transcript_follows_the_audio_on_the_session_timeline() -> None:
    h = Harness()
    h.start()
    events = h.speak(turn()) + h.advance(4.0)
    deltas = of_type(events, "session.output_transcript.delta")
    assert "".join(d["delta"] for d in deltas) == SYNTHETIC_REPLY
    assert len(deltas) == len(SYNTHETIC_REPLY.split())  # a word a delta
    seconds = len(audio_of(events)) / 2 / 24000
    # The reply starts as the caller's turn ends (≈ 2 s into the session) and the words
    # span its audio, one after another.
    assert deltas[0]["start_ms"] == pytest.approx(200 + 1200 + SPEECH_END_MS, abs=60)
    for before, after in pairwise(deltas):
        assert before["end_ms"] == after["start_ms"]
    assert deltas[-1]["end_ms"] - deltas[0]["start_ms"] == pytest.approx(seconds * 1000, abs=2)


# ---- barge-in and pacing -------------------------------------------------------------------------


def test_the_caller_barging_in_stops_the_agent_at_once() -> None:
    h = Harness(responder=LongResponder())
    h.start()
    h.speak(turn())
    # The agent talks; the client keeps streaming the (silent) line, as a phone does.
    talking = h.speak(silence(800))
    assert len(audio_of(talking)) / 2 / 24000 > 0.7
    speech, step = tone(600), 24000 * FRAME_MS // 1000
    onset: int | None = None
    after: list[dict[str, Any]] = []
    for index, start in enumerate(range(0, len(speech), step)):
        [(_, events)] = h.stream(speech[start : start + step])
        if onset is None and h.protocol.caller_speaking:
            onset = index
        if onset is not None:
            after += events
    # The detector needs 30 ms of speech: the second frame. From that frame's own answer on,
    # not one more chunk or word of the reply goes out.
    assert onset == 1
    assert of_type(after, "session.output_audio.delta") == []
    assert of_type(after, "session.output_transcript.delta") == []
    assert len(audio_of(h.events)) / 2 / 24000 < 2.0  # of a 4 s reply
    # Once the caller's turn ends, they are answered.
    rest = h.speak(silence(SPEECH_END_MS + 100)) + h.advance(4.5)
    assert said(rest).strip() == "A long reply."


@pytest.mark.parametrize("lead_ms", [200, 2000])
def test_audio_runs_ahead_of_real_time_by_at_most_lead_ms(lead_ms: int) -> None:
    h = Harness(responder=LongResponder(), lead_ms=lead_ms)
    h.start()
    first_at: float | None = None
    sent_ms = 0.0
    ahead: list[float] = []
    for now, events in h.stream(np.concatenate([turn(), silence(5000)])):
        sent_ms += len(audio_of(events)) / 2 / 24
        if sent_ms and first_at is None:
            first_at = now
        if first_at is not None:
            ahead.append(sent_ms - (now - first_at) * 1000)
    assert sent_ms == pytest.approx(4000, abs=1)
    assert max(ahead) <= lead_ms + 1e-6
    # The lead is used from the first chunk on: a server this far ahead bursts.
    assert ahead[0] >= lead_ms - 40


# ---- delegation and context ----------------------------------------------------------------------


def test_a_tool_intent_is_delegated_then_acknowledged_and_the_commentary_is_spoken() -> None:
    h, voice = scripted("transfer me to a human please")
    h.start()
    events = h.speak(turn()) + h.advance(4.0)
    request = voice.requests[0]
    # The voice offered every function of the script, so the brain delegates rather than
    # saying the transfer is unavailable.
    assert {"transfer_call", "end_call"} <= set(request.tools)
    created = one(events, "session.delegation.created")
    delegation = created["delegation"]
    assert delegation["id"].startswith("item_")
    assert (delegation["type"], delegation["target"]) == ("delegation", "client")
    assert h.protocol.delegations[delegation["id"]].name == "transfer_call"
    # Created as the brain decided (when the caller's turn ended), before any of the agent's
    # audio, and still after the caller's words: a client knows what the task is about.
    kinds = types(events)
    assert kinds.index("session.delegation.created") < kinds.index("session.output_audio.delta")
    assert kinds.index("session.delegation.created") > kinds.index("session.input_transcript.delta")
    assert created["offset_ms"] == pytest.approx(200 + 1200 + SPEECH_END_MS, abs=60)
    # The intent's reply is the spoken acknowledgement (a delay of 0: at once).
    assert said(events) == "Let me put you through to a colleague."
    first_word = of_type(events, "session.output_transcript.delta")[0]
    assert first_word["start_ms"] == pytest.approx(created["offset_ms"], abs=20)

    commentary = context("commentary", "Transferring you now.", delegation["id"], event_id="evt_c")
    answered = h.send(commentary) + h.advance(3.0)
    appended = one(answered, "session.commentary.appended")
    assert appended["client_event_id"] == "evt_c"
    assert (
        appended["start_ms"]
        == appended["end_ms"]
        == pytest.approx((h.now - 3.0 - 1000.0) * 1000, abs=1)
    )
    assert said(answered).strip() == "Transferring you now."
    assert rms_dbfs(audio_of(answered)) > -30
    assert voice.requests[-1].say == "Transferring you now."


def test_the_acknowledgement_waits_its_delay() -> None:
    h, _ = scripted("transfer me to a human please")
    h.start(delegation={"type": "client", "acknowledgement_delay_ms": 600})
    events = h.speak(turn()) + h.advance(4.0)
    created = one(events, "session.delegation.created")
    first_word = of_type(events, "session.output_transcript.delta")[0]
    assert first_word["start_ms"] == pytest.approx(created["offset_ms"] + 600, abs=20)
    assert said(events) == "Let me put you through to a colleague."


@pytest.mark.parametrize("kind", ["commentary", "thinking"])
def test_context_before_the_delay_cancels_the_pending_acknowledgement(kind: str) -> None:
    h, _ = scripted("transfer me to a human please")
    h.start(delegation={"type": "client", "acknowledgement_delay_ms": 2000})
    events = h.speak(turn()) + h.advance(0.5)
    created = one(events, "session.delegation.created")
    assert of_type(events, "session.output_audio.delta") == []
    answered = h.send(context(kind, "Transferring you now.", created["delegation"]["id"]))
    answered += h.advance(4.0)
    # Only the client's words are said (or nothing, for silent thinking).
    assert said(answered).strip() == ("Transferring you now." if kind == "commentary" else "")


def test_context_for_an_unknown_delegation_is_an_error() -> None:
    h = Harness()
    h.start()
    for kind in ("commentary", "thinking", "instructions"):
        error = one(h.send(context(kind, "Done.", "item_nope")), "error")["error"]
        assert (error["code"], error["param"]) == ("delegation_not_found", "delegation_id")
    assert h.protocol.context == []
    assert audio_of(h.advance(2.0)) == b""


def test_instructions_before_anything_make_the_agent_greet_then_steer_it() -> None:
    h, voice = scripted()
    h.start()
    first = h.send(context("instructions", "Greet the caller.", event_id="evt_i")) + h.advance(4.0)
    assert one(first, "session.instructions.appended")["client_event_id"] == "evt_i"
    assert said(first) == "Thank you for calling. How can I help you today?"
    assert rms_dbfs(audio_of(first)) > -30
    later = h.send(context("instructions", "What are your opening hours?")) + h.advance(4.0)
    assert said(later).strip().startswith("We are open Monday to Saturday")
    assert voice.requests[-1].user_text == "What are your opening hours?"


def test_commentary_with_no_delegation_is_said_as_it_is() -> None:
    h = Harness()
    h.start()
    events = h.send(context("commentary", "Your table is booked for eight.")) + h.advance(3.0)
    assert types(events)[0] == "session.commentary.appended"
    assert said(events) == "Your table is booked for eight."
    assert rms_dbfs(audio_of(events)) > -30


def test_thinking_is_acknowledged_and_kept_silently() -> None:
    h = Harness()
    h.start()
    h.advance(1.5)
    events = h.send(context("thinking", "The caller is a gold member.")) + h.advance(2.0)
    appended = one(events, "session.thinking.appended")
    assert appended["start_ms"] == appended["end_ms"] == 1500
    assert of_type(events, "session.output_audio.delta") == []
    assert [(c.kind, c.content) for c in h.protocol.context] == [
        ("thinking", "The caller is a gold member.")
    ]


def test_context_appends_need_the_delegation_id_key_and_string_content() -> None:
    h = Harness()
    h.start()
    missing = h.send_raw(json.dumps({"type": "session.thinking.append", "content": "x"}))
    assert one(missing, "error")["error"]["param"] == "delegation_id"
    wrong = h.send_raw(json.dumps(context("commentary", "x") | {"content": ["x"]}))
    assert one(wrong, "error")["error"]["param"] == "content"


# ---- mute, update, usage, close ------------------------------------------------------------------


def test_muted_input_counts_as_silence() -> None:
    h = Harness()
    h.start()
    assert types(h.send({"type": "session.input_audio.mute", "event_id": "m"})) == [
        "session.input_audio.muted"
    ]
    assert h.protocol.muted
    muted = h.speak(turn()) + h.advance(1.0)
    assert audio_of(muted) == b"" and not h.protocol.caller_speaking
    assert one(h.send({"type": "session.input_audio.unmute"}), "session.input_audio.unmuted")
    answered = h.speak(turn()) + h.advance(3.0)
    assert len(audio_of(answered)) > 0


def test_session_update_changes_delegation_settings_only() -> None:
    h = Harness()
    h.start()
    update = {
        "type": "session.update",
        "event_id": "u",
        "session": {
            "delegation": {"type": "client", "acknowledgement_delay_ms": 250},
            "triggers": [],
        },
    }
    updated = one(h.send(update), "session.updated")
    assert updated["client_event_id"] == "u"
    assert updated["session"]["delegation"] == {"type": "client", "acknowledgement_delay_ms": 250}
    # Omitted settings keep their values.
    kept = one(
        h.send({"type": "session.update", "session": {"delegation": {"type": "client"}}}),
        "session.updated",
    )
    assert kept["session"]["delegation"]["acknowledgement_delay_ms"] == 250
    for session, param in [
        ({"instructions": "Be rude."}, "session.instructions"),
        ({"model": "gpt-live-1.1"}, "session.model"),
        ({"audio": {"format": {"type": "audio/pcmu", "rate": 8000}}}, "session.audio"),
        ({"delegation": {"type": "responses"}}, "session.delegation.type"),
    ]:
        error = one(
            h.send_raw(json.dumps({"type": "session.update", "session": session})), "error"
        )["error"]
        assert (error["code"], error["param"]) == ("immutable_field_update", param)
    unknown = one(
        h.send_raw(json.dumps({"type": "session.update", "session": {"tools": []}})), "error"
    )
    assert unknown["error"]["code"] == "unknown_parameter"
    assert h.protocol.config is not None and h.protocol.config.instructions == DEFAULT_INSTRUCTIONS


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({"type": "response.create"}, "requires Responses delegation"),
        (
            {
                "type": "response.item.create",
                "item": {"type": "function_call_output", "call_id": "c", "output": "{}"},
            },
            "requires Responses delegation",
        ),
        ({"type": "decision.create", "event_id": "d"}, "not supported"),
        ({"type": "session.output_audio.fixture.play", "audio": ""}, "not supported"),
    ],
)
def test_events_of_other_delegations_are_refused(event: dict[str, Any], words: str) -> None:
    h = Harness()
    h.start()
    error = one(h.send(event), "error")["error"]
    assert words in error["message"]


def test_usage_is_reported_every_interval_and_with_the_close() -> None:
    h = Harness(usage_interval_s=2)
    h.start()
    assert h.protocol.next_deadline() == pytest.approx(h.now + 2)
    events = h.advance(5.0)
    assert [e["usage"] for e in of_type(events, "session.usage.updated")] == [
        {"seconds": 2},
        {"seconds": 4},
    ]
    closed = h.send({"type": "session.close", "event_id": "bye"})
    assert types(closed) == ["session.closed"]
    assert closed[0]["reason"] == "close_requested"
    assert closed[0]["client_event_id"] == "bye"
    assert closed[0]["usage"] == {"seconds": 5}
    assert closed[0]["session"]["status"] == "active"  # the final snapshot, as the API sends it
    assert h.protocol.ended
    # Nothing more is said or done.
    assert h.send({"type": "session.input_audio.mute"}) == [] and h.advance(3.0) == []
    assert h.protocol.next_deadline() is None


def test_the_session_expires_after_its_maximum_duration() -> None:
    h = Harness(max_session_s=3, usage_interval_s=10)
    h.start()
    h.send(context("commentary", "This will be cut off by the end of the session."))
    events = h.advance(2.9)
    assert not h.protocol.ended
    deadline = h.protocol.next_deadline()
    assert deadline is not None and deadline <= 1003.0
    closed = one(h.advance(0.2), "session.closed")
    assert closed["reason"] == "expired"
    assert closed["usage"] == {"seconds": 3}
    assert h.protocol.ended
    assert len(audio_of(events)) > 0


# ---- garbage -------------------------------------------------------------------------------------


GARBAGE: list[str | bytes] = [
    b"\x00\x01",
    "{not json",
    "[1, 2]",
    json.dumps({"type": 7}),
    json.dumps({"no": "type"}),
    json.dumps({"type": "session.dance"}),
    json.dumps({"type": "session.input_audio.append"}),
    json.dumps({"type": "session.input_audio.append", "audio": 5}),
    json.dumps({"type": "session.input_audio.append", "audio": "not base64!"}),
    json.dumps({"type": "session.input_audio.append", "audio": base64.b64encode(b"odd").decode()}),
    json.dumps({"type": "session.input_audio.append", "audio": "A" * (MAX_APPEND_CHARS + 4)}),
    json.dumps({"type": "session.input_audio.append", "audio": "", "extra": 1}),
    json.dumps({"type": "session.input_audio.mute", "event_id": 3}),
    json.dumps({"type": "session.update"}),
    json.dumps({"type": "session.update", "session": "all of it"}),
]


def test_garbage_costs_one_error_each_and_changes_nothing() -> None:
    h = Harness()
    h.start()
    before = h.protocol.config
    for message in GARBAGE:
        events = h.send_raw(message)
        assert types(events) == ["error"], message
        assert events[0]["error"]["code"]
    assert h.protocol.config == before
    # Still a working session.
    assert len(audio_of(h.speak(turn()) + h.advance(3.0))) > 0
