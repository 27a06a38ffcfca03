"""An outbound call's opening through CallBridge with answering-machine detection, in memory
with a fake clock: the agent stays silent and the model hears nothing until the verdict; then
it greets a person, leaves the voicemail message after the beep and hangs up, or hangs up on
the machine at once. Every event sent is validated against the ``openai`` models."""

from __future__ import annotations

from typing import Any

import numpy as np

from agent.bridge.actions import HangUp
from agent.outbound.amd_settings import AmdSettings
from agent.realtime.dialect import Dialect
from testbed import callee_audio
from testbed.callee_audio import CalleeAudio
from tests.test_bridge import FakeCall
from tests.test_bridge_live import LiveCall

VOICEMAIL = "Leave a short message: the dentist's reminder for tomorrow at nine."


def _outbound(**config: Any) -> FakeCall:
    config.setdefault("amd", AmdSettings())
    call = FakeCall(Dialect.GA, voicemail_instructions=VOICEMAIL, **config)
    call.answer()
    return call


class _Callee:
    """The callee's side of the line: its audio from the answer on, frame by frame in real
    time (each frame 20 ms of the fake clock), resumed where it stopped."""

    def __init__(self, call: FakeCall | LiveCall, audio: CalleeAudio) -> None:
        self.call = call
        self.audio = audio
        self._frames = iter(callee_audio.frames(audio))

    def play(self, until_ms: float | None = None) -> None:
        call = self.call
        while until_ms is None or call.now < until_ms:
            frame = next(self._frames, None)
            if frame is None:
                return
            call.take(call.bridge.caller_frame(frame, call.now))
            call.pull(1)


def _asked(call: FakeCall) -> list[str]:
    return [e["response"]["instructions"] for e in call.sent if e["type"] == "response.create"]


def _appends(call: FakeCall) -> list[dict[str, Any]]:
    return [e for e in call.sent if e["type"] == "input_audio_buffer.append"]


def _hang_ups(call: FakeCall) -> list[HangUp]:
    return [a for a in call.actions if isinstance(a, HangUp)]


def test_a_person_is_greeted_after_their_hello_and_heard_from_then_on() -> None:
    call = _outbound()
    callee = _Callee(call, callee_audio.hello(8000))
    callee.play(until_ms=1600)
    # The agent does not talk over "hello?", and the model has not heard it.
    assert _asked(call) == [] and _appends(call) == []
    callee.play(until_ms=2200)
    assert _asked(call) == ["Say hello."]
    (verdict,) = call.notes("amd_verdict")
    assert verdict.fields["verdict"] == "human" and verdict.fields["then"] == "talk"
    assert 1700 <= verdict.fields["decided_ms"] <= 1800
    # From the verdict on, the callee's audio reaches the model.
    appended = len(_appends(call))
    callee.play(until_ms=call.now + 200)
    assert len(_appends(call)) == appended + 10
    assert any(line.get("kind") == "amd" for line in call.lines)
    record = call.bridge.amd_record
    assert record is not None and record["verdict"] == "human"


def test_a_machine_gets_the_message_after_the_beep_then_the_agent_hangs_up() -> None:
    call = _outbound()
    audio = callee_audio.voicemail(8000)
    assert audio.beep_ms is not None and audio.beep_end_ms is not None
    callee = _Callee(call, audio)
    callee.play(until_ms=audio.beep_end_ms - 40)
    # Through the whole greeting and the beep: silence, and nothing sent to the model.
    assert _asked(call) == [] and _appends(call) == []
    (verdict,) = call.notes("amd_verdict")
    assert verdict.fields["verdict"] == "machine"
    assert verdict.fields["then"] == "message after the greeting"
    callee.play(until_ms=audio.beep_end_ms + 100)
    assert _asked(call) == [VOICEMAIL]
    (end,) = call.notes("amd_greeting_end")
    assert end.fields["how"] == "beep" and abs(end.fields["beep_ms"] - audio.beep_ms) <= 100
    # The message plays; the hang-up waits until it was heard to its end.
    call.response_created("resp_vm", call.sent[-1])
    call.speak("resp_vm", "item_vm", 1000, "Hello, this is the dentist's office.")
    call.response_done("resp_vm")
    call.pull(30)
    assert not _hang_ups(call)
    call.pull(30)
    assert [h.reason for h in _hang_ups(call)] == ["answering machine: message left"]
    heard = np.frombuffer(bytes(call.heard), dtype="<i2")
    assert np.count_nonzero(heard) == 1000 * 8  # every sample of the message went to the line
    # The machine's recording never reached the model.
    assert _appends(call) == []
    record = call.bridge.amd_record
    assert record is not None
    assert record["verdict"] == "machine" and record["greeting_end"] == "beep"
    assert record["on_machine"] == "message"


def test_on_machine_hangup_ends_the_call_at_the_verdict_without_a_word() -> None:
    call = _outbound(amd=AmdSettings(on_machine="hangup"))
    _Callee(call, callee_audio.voicemail(8000)).play()
    (hang_up,) = _hang_ups(call)
    assert hang_up.reason.startswith("answering machine: greeting longer than")
    assert call.bridge.outcome.ended_by == "agent"
    assert _asked(call) == [] and _appends(call) == []
    assert not call.notes("amd_greeting_end")


def test_nobody_speaking_is_unknown_and_the_agent_talks_at_the_time_limit() -> None:
    call = _outbound(silence_hangup_ms=2000)
    callee = _Callee(call, callee_audio.silence(8000, ms=5400))
    callee.play(until_ms=4900)
    # Detection is not the caller's silence: no "are you still there?" meanwhile.
    assert _asked(call) == []
    callee.play()
    assert _asked(call) == ["Say hello."]
    (verdict,) = call.notes("amd_verdict")
    assert verdict.fields["verdict"] == "unknown"


def test_a_line_sending_nothing_gets_its_verdict_from_the_clock() -> None:
    call = _outbound()
    while not _asked(call):
        deadline = call.bridge.next_deadline
        assert deadline is not None and deadline <= call.now + 240
        call.now = deadline
        call.take(call.bridge.tick(call.now))
        assert call.now <= AmdSettings().max_detect_ms + 240
    assert call.notes("amd_verdict")[0].fields["verdict"] == "unknown"


def test_the_recording_notice_waits_for_the_verdict_then_plays_before_the_greeting() -> None:
    call = FakeCall(Dialect.GA, amd=AmdSettings(), voicemail_instructions=VOICEMAIL)
    call.take(call.bridge.session_config())
    call.server("session.updated", session=call._session())
    call.take(call.bridge.media_started("PCMU", 8000))
    notice = (3000).to_bytes(2, "little", signed=True) * 8000  # 1 s
    call.take(call.bridge.call_confirmed(call.now, notice))
    callee = _Callee(call, callee_audio.hello(8000))
    callee.play(until_ms=1600)
    assert call.bridge.playout.queued_samples == 0  # not over the callee's "hello?"
    callee.play(until_ms=1800)
    assert call.notes("recording_notice") and _asked(call) == []
    callee.play(until_ms=2900)
    assert _asked(call) == ["Say hello."]


def test_an_inbound_call_is_greeted_on_the_answer_as_before() -> None:
    call = FakeCall(Dialect.GA)
    call.answer()
    assert _asked(call) == ["Say hello."] and call.bridge.amd_record is None


def test_no_voicemail_instructions_hang_up_at_the_greeting_end() -> None:
    call = FakeCall(Dialect.GA, amd=AmdSettings())
    call.answer()
    _Callee(call, callee_audio.voicemail(8000)).play()
    assert _asked(call) == []
    assert [h.reason for h in _hang_ups(call)] == [
        "answering machine: no voicemail instructions to speak"
    ]


def test_on_gpt_live_the_machine_hears_nothing_and_gets_the_message_after_the_beep() -> None:
    """GPT-Live answers speech by itself: holding the greeting back is what keeps it quiet."""
    call = LiveCall(amd=AmdSettings(), voicemail_instructions=VOICEMAIL)
    call.answer()
    audio = callee_audio.voicemail(8000)
    assert audio.beep_end_ms is not None
    kinds_before = set(call.kinds())
    callee = _Callee(call, audio)
    callee.play(until_ms=audio.beep_end_ms - 40)
    assert set(call.kinds()) == kinds_before  # no audio, no instructions went out
    callee.play(until_ms=audio.beep_end_ms + 100)
    asked = [e["content"] for e in call.sent if e["type"] == "session.instructions.append"]
    assert asked == [VOICEMAIL]
    live_ended = [h.reason for h in call.actions if isinstance(h, HangUp)]
    assert live_ended == []  # not before the message was spoken


def test_keys_and_a_lost_session_during_detection_do_not_make_the_agent_talk() -> None:
    call = _outbound()
    callee = _Callee(call, callee_audio.voicemail(8000))
    callee.play(until_ms=1000)
    call.take(call.bridge.caller_dtmf("5", "rfc4733", call.now))
    callee.play(until_ms=3500)  # past the DTMF batch: still nothing told to the model
    assert {"role": "event", "kind": "dtmf", "digit": "5", "method": "rfc4733"} in call.lines
    call.take(call.bridge.session_lost("socket closed", call.now))
    call.take(call.bridge.session_config())
    call.server("session.updated", session=call._session())
    call.take(call.bridge.session_restored())
    assert _asked(call) == []
    assert not any(e["type"] == "conversation.item.create" for e in call.sent)
    callee.play()
    assert _asked(call) == [VOICEMAIL]  # the opening still goes as detection decides
