"""Barge-in, driven frame by frame through the bridge: each ``pull()`` is 20 ms of the media
clock. The session passes G.711 through (8 kHz, one byte a sample), so every count is exact."""

from __future__ import annotations

from typing import Any

from agent.audio.codecs import PCMU
from agent.audio.playout import Playout
from agent.bridge import BridgeConfig, CallBridge, Step
from agent.bridge.barge_in import BargeIn
from agent.bridge.events import (
    AudioDelta,
    AudioDone,
    ResponseCreated,
    ResponseDone,
    SessionReady,
    SpeechStarted,
    SpeechStopped,
)
from agent.bridge.requests import CancelResponse, SessionSpec, Truncate

FRAME = 160  # samples at 8 kHz: one 20 ms pull
SILENCE = bytes(FRAME * 2)


class Line:
    """One call's bridge, answered and confirmed, with a G.711 passthrough session."""

    def __init__(self, **config: Any) -> None:
        self.bridge = CallBridge(
            BridgeConfig(session=SessionSpec("Be brief.", "marin"), g711_passthrough=True, **config)
        )
        self.now = 0.0
        self.bridge.session_config()
        self.bridge.server_event(SessionReady(), self.now)
        self.bridge.media_started("PCMU", 8000)
        self.bridge.call_confirmed(self.now)

    def event(self, event: Any) -> Step:
        return self.bridge.server_event(event, self.now)

    def deliver(self, response: str, item: str, ms: int) -> None:
        """A delta of ``ms`` ms of (non-silent) mu-law audio from the model."""
        pcm = (1000).to_bytes(2, "little", signed=True) * (ms * 8)
        self.event(AudioDelta(response, item, PCMU.encode(pcm)))

    def pull(self, frames: int) -> list[bytes]:
        self.now += 20 * frames
        return [self.bridge.playout.pull() for _ in range(frames)]

    def speech(self) -> Step:
        return self.event(SpeechStarted())


def _truncates(step: Step) -> list[tuple[str, int]]:
    return [(r.item_id, r.audio_end_ms) for r in step.requests if isinstance(r, Truncate)]


def _cancels(step: Step) -> int:
    return sum(isinstance(r, CancelResponse) for r in step.requests)


def test_interrupt_mid_item_truncates_at_what_was_handed_out() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 2000)
    line.pull(37)  # 740 ms heard
    assert _truncates(line.speech()) == [("item_a", 740)]
    # The very next pull (≤ 20 ms later) carries no agent audio.
    assert line.bridge.playout.pull() == SILENCE


def test_interrupt_at_item_start_truncates_to_zero() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 500)
    assert _truncates(line.speech()) == [("item_a", 0)]


def test_interrupt_after_item_fully_played_sends_nothing() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 400)
    line.event(AudioDone("item_a"))
    line.event(ResponseDone("resp_1"))
    line.pull(25)  # 500 ms: all 400 ms played, then silence
    step = line.speech()
    assert step.requests == []
    assert line.bridge.interruptions == 0


def test_interrupt_with_nothing_playing_sends_nothing() -> None:
    line = Line()
    assert line.speech().requests == []


def test_second_item_of_same_response_is_the_one_truncated() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 300)
    line.event(AudioDone("item_a"))
    line.deliver("resp_1", "item_b", 1000)
    line.pull(25)  # 300 ms of a, 200 ms of b
    assert _truncates(line.speech()) == [("item_b", 200)]


def test_frame_straddling_two_items_is_counted_exactly() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 10)  # half a frame
    line.event(AudioDone("item_a"))
    line.deliver("resp_1", "item_b", 1000)
    line.pull(3)  # 10 ms of a + 50 ms of b
    assert _truncates(line.speech()) == [("item_b", 50)]


def test_late_deltas_after_the_cut_are_dropped_and_a_new_response_plays() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 1000)
    line.pull(10)
    line.speech()
    line.deliver("resp_1", "item_a", 200)
    line.deliver("resp_1", "item_c", 200)
    assert line.bridge.playout.queued_samples == 0
    assert all(frame == SILENCE for frame in line.pull(5))
    line.event(ResponseDone("resp_1"))
    line.event(ResponseCreated("resp_2"))
    line.deliver("resp_2", "item_d", 200)
    assert line.pull(1)[0] != SILENCE


def test_back_to_back_interruptions() -> None:
    line = Line()
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 1000)
    line.pull(5)
    assert _truncates(line.speech()) == [("item_a", 100)]
    assert line.speech().requests == []  # nothing left playing
    line.event(ResponseDone("resp_1"))
    line.event(ResponseCreated("resp_2"))
    line.deliver("resp_2", "item_b", 1000)
    line.pull(7)
    assert _truncates(line.speech()) == [("item_b", 140)]


def test_truncate_never_exceeds_audio_received() -> None:
    # The playout holds more audio than the model's count says (e.g. a resampler flush
    # rounding up): the truncate is clamped to what the model sent.
    playout = Playout()
    barge = BargeIn(playout, output_rate=24000)
    barge.received("resp_1", "item_a", 100 * 24)  # model sent 100 ms
    playout.push("item_a", bytes(130 * 8 * 2))  # 130 ms queued
    for _ in range(6):
        playout.pull()  # 120 ms handed out
    cut = barge.cut()
    assert cut is not None and cut.audio_end_ms == 100


def test_cancel_only_when_server_does_not_interrupt_and_a_response_is_active() -> None:
    line = Line(server_interrupts=True)
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 500)
    step = line.speech()
    assert _truncates(step) and _cancels(step) == 0

    line = Line(server_interrupts=False)
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 500)
    line.pull(2)
    step = line.speech()
    assert [type(r).__name__ for r in step.requests] == ["Truncate", "CancelResponse"]
    # A played-out response that is already done: no cancel.
    line.event(ResponseDone("resp_1"))
    line.event(ResponseCreated("resp_2"))
    line.deliver("resp_2", "item_b", 100)
    line.event(AudioDone("item_b"))
    line.event(ResponseDone("resp_2"))
    line.pull(2)
    step = line.speech()
    assert _truncates(step) == [("item_b", 40)] and _cancels(step) == 0


def test_cancel_is_not_repeated_for_the_same_response() -> None:
    line = Line(server_interrupts=False)
    line.event(ResponseCreated("resp_1"))
    assert _cancels(line.speech()) == 1
    assert line.speech().requests == []


def test_too_short_triggers_are_ignored_and_long_speech_cuts() -> None:
    line = Line(server_interrupts=False, min_barge_in_ms=100, min_barge_in_dbfs=-40)
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 2000)
    line.pull(10)
    loud = (6000).to_bytes(2, "little", signed=True) * FRAME
    quiet = bytes(FRAME * 2)
    assert line.speech().requests == []  # held: the agent is talking
    assert line.bridge.caller_frame(loud, line.now).requests[-1:] != [CancelResponse()]
    line.bridge.caller_frame(quiet, line.now)  # quiet frames do not count
    stopped = line.event(SpeechStopped())  # only 20 ms of energy: a cough, an echo
    assert not line.bridge.barge_in.pending
    assert line.bridge.playout.queued_samples > 0  # the agent kept talking
    assert line.bridge.ignored_barge_ins == 1 and line.bridge.interruptions == 0
    assert [entry["kind"] for entry in stopped.lines] == ["barge_in_ignored"]

    assert line.speech().requests == []
    steps = [line.bridge.caller_frame(loud, line.now) for _ in range(5)]
    assert all(not _truncates(step) for step in steps[:4])
    assert _truncates(steps[4]) == [("item_a", 200)] and _cancels(steps[4]) == 1
    assert line.bridge.playout.queued_samples == 0
    line.event(SpeechStopped())  # the end of a real interruption is not an ignored one
    assert (line.bridge.ignored_barge_ins, line.bridge.interruptions) == (1, 1)


def test_min_barge_in_does_not_delay_barge_in_when_agent_is_silent() -> None:
    line = Line(min_barge_in_ms=200, server_interrupts=False)
    line.speech()
    assert not line.bridge.barge_in.pending  # nothing to guard: acted on at once


def test_only_a_turn_that_cuts_agent_audio_counts_as_a_barge_in() -> None:
    line = Line()
    line.speech()  # the agent was silent: nothing to cut
    assert line.bridge.interruptions == 0
    line.event(ResponseCreated("resp_1"))
    line.deliver("resp_1", "item_a", 1000)
    line.pull(5)
    step = line.speech()
    assert line.bridge.interruptions == 1
    assert [n.event for n in step.actions if hasattr(n, "event")] == ["barge_in"]
    line.speech()  # the same turn, nothing left playing
    assert line.bridge.interruptions == 1
