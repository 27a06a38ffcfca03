"""The call experience through CallBridge, in memory, with a fake clock in milliseconds: the
silence and length limits, fillers while tools run, too-short barge-ins, far-end hold.

The same fake calls as the protocol tests (every event either way validated against the
``openai`` models): ``FakeCall`` on the Realtime API, ``LiveCall`` on GPT-Live.
"""

from __future__ import annotations

from typing import Any

from agent.audio.levels import rms_dbfs
from agent.bridge.actions import HangUp, RunTool
from agent.bridge.filler import FILLER_ITEM, HOLDING_LINE, thinking_sound
from agent.bridge.limits import SILENCE_GOODBYE, STILL_THERE, TIME_GOODBYE
from agent.realtime.dialect import Dialect
from tests.test_bridge import FakeCall
from tests.test_bridge_live import LiveCall

LOUD = (6000).to_bytes(2, "little", signed=True) * 160


def _greeted(**config: Any) -> FakeCall:
    """A GA call whose greeting (200 ms) has been played and heard."""
    call = FakeCall(Dialect.GA, **config)
    call.answer()
    call.response_created("resp_greet", call.sent[-1])
    call.speak("resp_greet", "item_greet", 200)
    call.response_done("resp_greet")
    call.pull(10)
    return call


def _asked(call: FakeCall | LiveCall) -> list[str]:
    """The instructions of every response the bridge asked for (Realtime) or appended (Live)."""
    found = []
    for event in call.sent:
        if event["type"] == "response.create":
            found.append(event["response"].get("instructions"))
        elif event["type"] == "session.instructions.append":
            found.append(event["content"])
    return found


def _hang_ups(call: FakeCall | LiveCall) -> list[HangUp]:
    return [a for a in call.actions if isinstance(a, HangUp)]


def _answer(call: FakeCall, response_id: str, ms: int) -> None:
    """The model answers the latest request with ``ms`` of audio."""
    call.response_created(response_id, call.sent[-1])
    call.speak(response_id, f"item_{response_id}", ms)
    call.response_done(response_id)


# -- silence ---------------------------------------------------------------------------------
def test_silence_asks_once_then_says_goodbye_and_hangs_up() -> None:
    call = _greeted(silence_hangup_ms=3000)
    call.pull(147)  # 2.94 s after the greeting was heard
    assert _asked(call) == ["Say hello."]
    call.pull(4)
    assert _asked(call) == ["Say hello.", STILL_THERE]
    _answer(call, "resp_ask", 400)
    # The question itself does not count as silence: the count starts after it was heard.
    call.pull(20 + 147)
    assert _asked(call)[-1] == STILL_THERE
    call.pull(4)
    assert _asked(call)[-1] == SILENCE_GOODBYE
    assert not _hang_ups(call)  # not before the goodbye was said and heard
    call.pull(10)
    assert not _hang_ups(call)  # the model has not started it yet
    _answer(call, "resp_bye", 300)
    call.pull(20)
    assert [h.reason for h in _hang_ups(call)] == ["silence: no caller speech for 6 s"]
    assert call.bridge.outcome.ended_by == "agent"
    kinds = [line.get("kind") for line in call.lines]
    assert "silence_check" in kinds and "limit_goodbye" in kinds


def test_the_caller_answering_starts_the_silence_count_over() -> None:
    call = _greeted(silence_hangup_ms=3000)
    call.pull(151)
    assert _asked(call)[-1] == STILL_THERE
    _answer(call, "resp_ask", 200)
    call.pull(20)
    call.speech_started("item_yes")
    call.pull(25)
    call.server("input_audio_buffer.speech_stopped", audio_end_ms=int(call.now), item_id="item_yes")
    _answer(call, "resp_2", 200)
    call.pull(160)  # 3.2 s: silent again, so asked again (a new silence), never hung up
    assert _asked(call)[-1] == STILL_THERE and _asked(call).count(STILL_THERE) == 2
    assert not _hang_ups(call)


def test_no_silence_count_while_a_tool_runs_or_the_call_is_held() -> None:
    call = _greeted(silence_hangup_ms=1000)
    call.take(call.bridge.far_end_hold(True))
    call.pull(200)  # 4 s on hold
    call.take(call.bridge.far_end_hold(False))
    call.pull(45)
    assert STILL_THERE not in _asked(call)
    call.pull(10)
    assert STILL_THERE in _asked(call)


def test_silence_limit_on_gpt_live_is_instructions() -> None:
    call = LiveCall(silence_hangup_ms=2000)
    call.answer()
    call.pull(101)
    assert _asked(call) == ["Say hello.", STILL_THERE]


# -- length ----------------------------------------------------------------------------------
def test_max_call_says_goodbye_before_the_limit_and_hangs_up_at_it_at_the_latest() -> None:
    call = _greeted(max_call_ms=10_000, max_call_goodbye_ms=3000)
    call.pull(338)  # 6.96 s after the answer
    assert TIME_GOODBYE not in _asked(call)
    call.pull(2)
    assert _asked(call)[-1] == TIME_GOODBYE
    call.response_created("resp_bye", call.sent[-1])
    call.speak("resp_bye", "item_bye", 8000)  # a goodbye far too long for the time left
    call.pull(149)
    assert not _hang_ups(call)
    call.pull(1)
    assert [h.reason for h in _hang_ups(call)] == ["max_call_s: the 10 s limit"]
    assert call.now == 10_000


def test_the_length_goodbye_waits_for_the_reply_in_progress() -> None:
    call = _greeted(max_call_ms=5000, max_call_goodbye_ms=1000)
    call.pull(150)
    call.response_created("resp_long")
    call.speak("resp_long", "item_long", 900)
    call.pull(51)  # past the goodbye time, while a response is still in progress
    assert TIME_GOODBYE not in _asked(call)
    call.response_done("resp_long")
    call.pull(1)
    assert _asked(call)[-1] == TIME_GOODBYE


# -- fillers ---------------------------------------------------------------------------------
def _tool_call(call: FakeCall, call_id: str = "call_1") -> None:
    call.response_created(f"resp_{call_id}")
    item = {"id": f"item_{call_id}", "type": "function_call", "name": "lookup",
            "call_id": call_id, "arguments": "", "status": "in_progress",
            "object": "realtime.item"}  # fmt: skip
    call.server("response.output_item.added", response_id=f"resp_{call_id}", output_index=0,
                item=item)  # fmt: skip
    call.server("response.function_call_arguments.done", response_id=f"resp_{call_id}",
                item_id=f"item_{call_id}", output_index=0, call_id=call_id,
                arguments="{}", name="lookup")  # fmt: skip
    call.response_done(f"resp_{call_id}")
    assert any(isinstance(a, RunTool) and a.call_id == call_id for a in call.actions)


def test_a_slow_tool_gets_the_thinking_sound_until_its_result() -> None:
    call = _greeted(filler="tone", filler_after_ms=600)
    _tool_call(call)
    start = len(call.heard)
    call.pull(29)
    assert rms_dbfs(bytes(call.heard[start:])) < -90  # 580 ms: not yet
    call.pull(60)
    filler = bytes(call.heard[start + 30 * 320 :])
    assert -40 < rms_dbfs(filler) < -25  # soft, but there
    assert call.bridge.playout.queued_of(FILLER_ITEM) > 0
    assert not call.bridge.agent_speaking  # a filler is not the agent talking
    call.take(call.bridge.tool_result("call_1", "found it"))
    assert call.bridge.playout.queued_samples == 0
    assert call.bridge.playout.pull() == bytes(320)  # silent on the very next frame
    assert call.bridge.fillers == 1
    assert [line["filler"] for line in call.lines if line.get("kind") == "tool_filler"] == ["tone"]


def test_the_thinking_sound_repeats_for_a_long_tool_and_yields_to_the_model() -> None:
    call = _greeted(filler="tone", filler_after_ms=200)
    _tool_call(call)
    call.pull(10 + 250)  # 5 s of waiting: the sound is topped up as it plays
    period = len(thinking_sound(8000)) // 320
    assert call.bridge.playout.frames_pulled > period * 3
    assert rms_dbfs(bytes(call.heard[-period * 320 :])) > -40
    # The model speaks anyway (a reply to the caller): the sound makes way at once.
    call.response_created("resp_x")
    call.speak("resp_x", "item_x", 200)
    assert call.bridge.playout.queued_of(FILLER_ITEM) == 0
    assert call.bridge.playout.current_item == "item_x"


def test_no_filler_while_the_agent_speaks_or_for_a_quick_tool() -> None:
    call = _greeted(filler="tone", filler_after_ms=300)
    _tool_call(call)
    call.response_created("resp_talk")
    call.speak("resp_talk", "item_talk", 1000)
    call.pull(30)
    assert call.bridge.playout.queued_of(FILLER_ITEM) == 0
    call.take(call.bridge.tool_result("call_1", "done"))
    call.pull(60)
    assert call.bridge.fillers == 0


def test_the_spoken_filler_is_one_holding_line_per_wait() -> None:
    call = _greeted(filler="spoken", filler_after_ms=500)
    _tool_call(call)
    call.pull(26)
    assert _asked(call)[-1] == HOLDING_LINE
    _answer(call, "resp_hold", 400)
    call.pull(100)
    assert _asked(call).count(HOLDING_LINE) == 1
    # The result's response follows the holding line, as for any output.
    sent = call.take(call.bridge.tool_result("call_1", "found it"))
    assert [e["type"] for e in sent] == ["conversation.item.create", "response.create"]


def test_a_delegation_on_gpt_live_gets_the_filler_too() -> None:
    call = LiveCall(filler="tone", filler_after_ms=400)
    call.answer()
    delegation = {"id": "dlg_1", "type": "delegation", "target": "client"}
    call.server("session.delegation.created", offset_ms=100, delegation=delegation)
    call.pull(30)
    assert call.bridge.playout.queued_of(FILLER_ITEM) > 0
    call.take(call.bridge.delegation_result("dlg_1", "It is sunny."))
    assert call.bridge.playout.queued_of(FILLER_ITEM) == 0


# -- barge-in that is too short --------------------------------------------------------------
def test_a_cough_with_the_servers_interrupt_response_keeps_what_was_received() -> None:
    """With interrupt_response on, the server cancels its reply on any speech: a held trigger
    that turns out to be a cough leaves the agent playing what it already has."""
    call = _greeted(min_barge_in_ms=200, server_interrupts=True)
    call.response_created("resp_1")
    call.speak("resp_1", "item_1", 2000)
    call.pull(10)
    call.speech_started("item_cough")
    call.take(call.bridge.caller_frame(LOUD, call.now))
    call.response_done("resp_1")  # the server cancelled it
    call.server("input_audio_buffer.speech_stopped", audio_end_ms=int(call.now),
                item_id="item_cough")  # fmt: skip
    assert "conversation.item.truncate" not in call.kinds()
    assert call.bridge.ignored_barge_ins == 1 and call.bridge.interruptions == 0
    before = call.bridge.playout.played_samples("item_1")
    call.pull(10)
    assert call.bridge.playout.played_samples("item_1") == before + 1600


# -- far-end hold ----------------------------------------------------------------------------
def test_hold_stops_caller_audio_and_the_agent_and_resume_goes_on_where_it_was() -> None:
    call = _greeted()
    call.response_created("resp_1")
    call.speak("resp_1", "item_1", 1000)
    call.pull(10)
    call.take(call.bridge.far_end_hold(True))
    appends = call.kinds().count("input_audio_buffer.append")
    for _ in range(20):
        call.take(call.bridge.caller_frame(LOUD, call.now))
        call.pull(1)
    assert call.kinds().count("input_audio_buffer.append") == appends
    assert call.bridge.playout.played_samples("item_1") == 1600  # paused at 200 ms
    call.take(call.bridge.far_end_hold(False))
    call.take(call.bridge.caller_frame(LOUD, call.now))
    assert call.kinds().count("input_audio_buffer.append") == appends + 1
    call.pull(40)
    assert call.bridge.playout.played_samples("item_1") == 8000  # all of it, nothing lost
    assert [line["kind"] for line in call.lines if line.get("kind") in ("hold", "resume")] == [
        "hold",
        "resume",
    ]
