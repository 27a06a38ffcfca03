"""A turn's life in the local protocol with slow, threaded parts: transcription of the
caller's audio, replies produced in the background, the idle timeout."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

import numpy as np
import pytest

from agent.local.protocol import LEAD_MS
from agent.local.replies import ReplyPlan, ReplyRequest
from agent.local.reply_stream import ReplyStream
from agent.local.vad import EnergyVad, VadConfig, VadEvent
from agent.realtime.dialect import Dialect, OutputEvent, wire_name
from tests.local_helpers import server_vad, session_update, silence, tone
from tests.test_local_protocol import DIALECTS, Harness, of_type, one, sent_audio, types


class FakeTranscriber:
    """Hands out futures the test completes (or fails) when it likes."""

    def __init__(self, text: str | None = "what are your opening hours") -> None:
        self.text = text
        self.jobs: list[tuple[bytes, int, Future[str]]] = []

    def submit(self, pcm: bytes, rate: int) -> Future[str]:
        future: Future[str] = Future()
        if self.text is not None:
            future.set_result(self.text)
        self.jobs.append((pcm, rate, future))
        return future


class StreamResponder:
    """Returns streams the test fills by hand, as a worker thread would."""

    def __init__(self) -> None:
        self.streams: list[ReplyStream] = []
        self.requests: list[ReplyRequest] = []

    def reply(self, request: ReplyRequest) -> ReplyStream:
        self.requests.append(request)
        stream = ReplyStream()
        self.streams.append(stream)
        return stream


def transcription_on(dialect: Dialect) -> dict[str, Any]:
    if dialect is Dialect.GA:
        session = {"type": "realtime", "audio": {"input": {"transcription": {"model": "local"}}}}
        return {"type": "session.update", "session": session}
    return {"type": "session.update", "session": {"input_audio_transcription": {"model": "x"}}}


def turn() -> np.ndarray:
    return np.concatenate([silence(200), tone(600), silence(700)])


@pytest.mark.parametrize("dialect", DIALECTS)
def test_committed_turns_are_transcribed_when_asked(dialect: Dialect) -> None:
    transcriber = FakeTranscriber()
    h = Harness(dialect, transcriber=transcriber, responder=StreamResponder())
    h.send(transcription_on(dialect))
    events = h.speak(turn())
    committed = one(events, "input_audio_buffer.committed")
    completed = one(events, "conversation.item.input_audio_transcription.completed")
    assert completed["item_id"] == committed["item_id"]
    assert completed["transcript"] == "what are your opening hours"
    assert completed["content_index"] == 0
    assert completed["usage"]["type"] == "duration"
    delta = one(events, "conversation.item.input_audio_transcription.delta")
    assert delta["delta"] == "what are your opening hours"
    # The transcript lands in the item, as a retrieve shows.
    retrieved = h.send({"type": "conversation.item.retrieve", "item_id": committed["item_id"]})
    content = one(retrieved, "conversation.item.retrieved")["item"]["content"][0]
    assert content["transcript"] == "what are your opening hours"
    (pcm, rate, _) = transcriber.jobs[0]
    assert rate == 24000 and len(pcm) > 0


@pytest.mark.parametrize("dialect", DIALECTS)
def test_transcripts_arrive_whenever_they_are_done(dialect: Dialect) -> None:
    transcriber = FakeTranscriber(text=None)
    h = Harness(dialect, transcriber=transcriber, responder=StreamResponder())
    h.send(transcription_on(dialect))
    events = h.speak(turn())
    assert "conversation.item.input_audio_transcription.completed" not in types(events)
    transcriber.jobs[0][2].set_result("hello")
    assert one(h.advance(0.01), "conversation.item.input_audio_transcription.completed")
    h.speak(turn())
    transcriber.jobs[1][2].set_exception(RuntimeError("model missing"))
    failed = one(h.advance(0.01), "conversation.item.input_audio_transcription.failed")
    assert "model missing" in failed["error"]["message"]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_no_transcription_events_unless_enabled(dialect: Dialect) -> None:
    transcriber = FakeTranscriber()
    responder = StreamResponder()
    h = Harness(dialect, transcriber=transcriber, responder=responder)
    events = h.speak(turn())
    assert not [t for t in types(events) if "input_audio_transcription" in t]
    # The responder still gets the words, started lazily for its reply.
    request = responder.requests[-1]
    assert request.user_transcript is not None
    assert request.user_transcript() == "what are your opening hours"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_background_reply_opens_when_planned_and_streams_as_audio_comes(
    dialect: Dialect,
) -> None:
    responder = StreamResponder()
    h = Harness(dialect, responder=responder)
    wakes: list[int] = []
    h.protocol.waker = lambda: wakes.append(1)
    events = h.send({"type": "response.create"})
    assert types(events) == ["response.created"]
    # Nothing to do until the worker delivers: the transport sleeps until woken.
    assert h.protocol.next_deadline() is None
    stream = responder.streams[0]
    stream.set_plan(ReplyPlan("Hello there, caller."))
    assert wakes
    opened = h.advance(0.01)
    assert "response.content_part.added" in types(opened)
    # Planned, but no audio yet: still nothing to do until the next wake-up.
    assert h.protocol.next_deadline() is None
    starved = h.advance(0.05)
    assert not of_type(starved, wire_name(dialect, OutputEvent.AUDIO_DELTA))
    stream.put_audio(tone(300).astype("<i2").tobytes())
    stream.finish()
    rest = h.until_done()
    assert len(sent_audio(rest, dialect)) == 300 * 48
    transcript = one(rest, wire_name(dialect, OutputEvent.TRANSCRIPT_DONE))["transcript"]
    assert transcript == "Hello there, caller."
    assert one(rest, "response.done")["response"]["status"] == "completed"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_cancelling_a_background_reply_stops_its_producer(dialect: Dialect) -> None:
    responder = StreamResponder()
    h = Harness(dialect, responder=responder)
    h.send({"type": "response.create"})
    events = h.send({"type": "response.cancel"})
    assert one(events, "response.done")["response"]["status"] == "cancelled"
    assert responder.streams[0].cancelled


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_producer_that_fails_before_planning_fails_the_response(dialect: Dialect) -> None:
    responder = StreamResponder()
    h = Harness(dialect, responder=responder)
    h.send({"type": "response.create"})
    responder.streams[0].finish(RuntimeError("whisper exploded"))
    done = one(h.advance(0.01), "response.done")["response"]
    assert done["status"] == "failed"
    assert "whisper exploded" in done["status_details"]["error"]["message"]


def idle_session(idle_ms: int) -> dict[str, Any]:
    vad = server_vad(prefix_padding_ms=0, silence_duration_ms=300, idle_timeout_ms=idle_ms)
    return session_update(Dialect.GA, turn_detection=vad)


def speak_and_answer(h: Harness) -> list[dict[str, Any]]:
    events = h.speak(np.concatenate([silence(100), tone(500), silence(500)]))
    events += h.until_done()
    return events


def test_idle_timeout_prompts_the_caller_after_the_reply_was_heard() -> None:
    h = Harness(Dialect.GA)
    h.send(idle_session(2000))
    speak_and_answer(h)
    # The countdown starts when the reply's audio has played out, not when it was sent: the
    # audio ran LEAD_MS ahead of real time.
    played_out = h.now + LEAD_MS / 1000
    quiet = silence(20)
    events: list[dict[str, Any]] = []
    while "input_audio_buffer.timeout_triggered" not in types(events):
        assert h.now < played_out + 3, "the idle timeout never fired"
        events += h.speak(quiet)
        events += h.advance(0.02)
    fired_at = h.now
    assert fired_at == pytest.approx(played_out + 2.0, abs=0.1)
    trigger = one(events, "input_audio_buffer.timeout_triggered")
    assert trigger["audio_end_ms"] - trigger["audio_start_ms"] == pytest.approx(2000, abs=150)
    events += h.until_done()
    committed = one(events, "input_audio_buffer.committed")
    assert committed["item_id"] == trigger["item_id"]
    assert types(events).index("input_audio_buffer.committed") < types(events).index(
        "response.created"
    )
    assert one(events, "response.done")["response"]["status"] == "completed"


def test_speech_before_the_idle_timeout_disarms_it() -> None:
    responder = StreamResponder()
    h = Harness(Dialect.GA, responder=responder)
    h.send(idle_session(1000))
    h.send({"type": "response.create"})
    responder.streams[0].set_plan(ReplyPlan("Hi."))
    responder.streams[0].finish()
    assert one(h.advance(0.05), "response.done")
    assert h.protocol.next_deadline() is not None  # the idle countdown runs
    events = h.speak(tone(300))
    assert "input_audio_buffer.speech_started" in types(events)
    assert h.protocol.next_deadline() is None
    events = h.advance(1.5)
    assert "input_audio_buffer.timeout_triggered" not in types(events)


@pytest.mark.parametrize("settings", [{"idle_timeout_ms": None}, {"type": "semantic_vad"}])
def test_no_idle_timeout_unless_server_vad_sets_one(settings: dict[str, Any]) -> None:
    h = Harness(Dialect.GA)
    vad = {**server_vad(prefix_padding_ms=0, silence_duration_ms=300), **settings}
    h.send(session_update(Dialect.GA, turn_detection=vad))
    speak_and_answer(h)
    assert "input_audio_buffer.timeout_triggered" not in types(h.advance(5.0))


class CountingVad(EnergyVad):
    closed = 0

    def close(self) -> None:
        CountingVad.closed += 1


def test_detectors_are_closed_when_replaced_and_at_the_end() -> None:
    CountingVad.closed = 0

    def factory(rate: int, config: VadConfig) -> CountingVad:
        return CountingVad(rate, config)

    h = Harness(Dialect.GA, vad_factory=factory)
    h.send(session_update(Dialect.GA, turn_detection=server_vad(silence_duration_ms=400)))
    assert CountingVad.closed == 1
    h.protocol.close()
    assert CountingVad.closed == 2
    assert isinstance(VadEvent("start", 0), tuple)
