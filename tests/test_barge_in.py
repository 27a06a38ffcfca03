"""The barge-in core, driven frame by frame: each ``pull()`` is 20 ms of the media clock."""

from __future__ import annotations

from agent.audio.playout import Playout
from agent.barge_in import BargeIn

FRAME = 160  # samples at 8 kHz: one 20 ms pull
RATE_RATIO = 3  # 24 kHz received per 8 kHz played


def _pcm(samples: int, value: int = 1000) -> bytes:
    return value.to_bytes(2, "little", signed=True) * samples


def _deliver(barge: BargeIn, playout: Playout, response: str, item: str, ms: int) -> bool:
    """A delta of ``ms`` ms from the model, resampled to 8 kHz into the playout."""
    accepted = barge.accept_audio(response, item, ms * 24)
    if accepted:
        playout.push(item, _pcm(ms * 8))
    return accepted


def _pull(playout: Playout, frames: int) -> list[bytes]:
    return [playout.pull() for _ in range(frames)]


def _setup(**kwargs: object) -> tuple[Playout, BargeIn]:
    playout = Playout()
    return playout, BargeIn(playout, **kwargs)  # type: ignore[arg-type]


def test_interrupt_mid_item_truncates_at_what_was_handed_out() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 2000)
    _pull(playout, 37)  # 740 ms heard
    cut = barge.speech_started()
    assert cut is not None
    assert cut.item_id == "item_a"
    assert cut.audio_end_ms == 740
    assert cut.events == [
        {
            "type": "conversation.item.truncate",
            "item_id": "item_a",
            "content_index": 0,
            "audio_end_ms": 740,
        }
    ]
    # The very next pull (≤ 20 ms later) carries no agent audio.
    assert playout.pull() == bytes(FRAME * 2)


def test_interrupt_at_item_start_truncates_to_zero() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 500)
    cut = barge.speech_started()
    assert cut is not None and cut.audio_end_ms == 0
    assert cut.events[0]["audio_end_ms"] == 0


def test_interrupt_after_item_fully_played_sends_nothing() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 400)
    barge.audio_done("item_a")
    barge.response_done("resp_1")
    _pull(playout, 25)  # 500 ms: all 400 ms played, then silence
    cut = barge.speech_started()
    assert cut is not None
    assert cut.events == []
    assert cut.item_id is None


def test_interrupt_with_nothing_playing_sends_nothing() -> None:
    _, barge = _setup()
    cut = barge.speech_started()
    assert cut is not None and cut.events == []


def test_second_item_of_same_response_is_the_one_truncated() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 300)
    barge.audio_done("item_a")
    _deliver(barge, playout, "resp_1", "item_b", 1000)
    _pull(playout, 25)  # 300 ms of a, 200 ms of b
    cut = barge.speech_started()
    assert cut is not None
    assert (cut.item_id, cut.audio_end_ms) == ("item_b", 200)


def test_frame_straddling_two_items_is_counted_exactly() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 10)  # half a frame
    barge.audio_done("item_a")
    _deliver(barge, playout, "resp_1", "item_b", 1000)
    _pull(playout, 3)  # 10 ms of a + 50 ms of b
    cut = barge.speech_started()
    assert cut is not None
    assert (cut.item_id, cut.audio_end_ms) == ("item_b", 50)


def test_late_deltas_after_the_cut_are_dropped_and_a_new_response_plays() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 1000)
    _pull(playout, 10)
    barge.speech_started()
    assert not _deliver(barge, playout, "resp_1", "item_a", 200)
    assert not _deliver(barge, playout, "resp_1", "item_c", 200)
    assert playout.queued_samples == 0
    assert all(frame == bytes(FRAME * 2) for frame in _pull(playout, 5))
    assert barge.stale_deltas_dropped == 2
    barge.response_done("resp_1")
    barge.response_created("resp_2")
    assert _deliver(barge, playout, "resp_2", "item_d", 200)
    assert playout.pull() != bytes(FRAME * 2)


def test_back_to_back_interruptions() -> None:
    playout, barge = _setup()
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 1000)
    _pull(playout, 5)
    first = barge.speech_started()
    second = barge.speech_started()
    assert first is not None and first.audio_end_ms == 100
    assert second is not None and second.events == []  # nothing left playing
    barge.response_done("resp_1")
    barge.response_created("resp_2")
    _deliver(barge, playout, "resp_2", "item_b", 1000)
    _pull(playout, 7)
    third = barge.speech_started()
    assert third is not None and (third.item_id, third.audio_end_ms) == ("item_b", 140)


def test_truncate_never_exceeds_audio_received() -> None:
    # The playout holds more 8 kHz audio than the model's 24 kHz count says (e.g. a resampler
    # flush rounding up): the truncate is clamped to what the model sent.
    playout, barge = _setup()
    barge.response_created("resp_1")
    barge.accept_audio("resp_1", "item_a", 100 * 24)  # model sent 100 ms
    playout.push("item_a", _pcm(130 * 8))  # 130 ms queued
    _pull(playout, 6)  # 120 ms handed out
    cut = barge.speech_started()
    assert cut is not None and cut.audio_end_ms == 100


def test_cancel_only_when_server_does_not_interrupt_and_a_response_is_active() -> None:
    playout, barge = _setup(server_interrupts=True)
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 500)
    cut = barge.speech_started()
    assert cut is not None
    assert [e["type"] for e in cut.events] == ["conversation.item.truncate"]

    playout, barge = _setup(server_interrupts=False)
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 500)
    _pull(playout, 2)
    cut = barge.speech_started()
    assert cut is not None
    assert [e["type"] for e in cut.events] == ["conversation.item.truncate", "response.cancel"]
    # Played-out response that is already done: no cancel.
    barge.response_done("resp_1")
    barge.response_created("resp_2")
    _deliver(barge, playout, "resp_2", "item_b", 100)
    barge.audio_done("item_b")
    barge.response_done("resp_2")
    _pull(playout, 2)
    cut = barge.speech_started()
    assert cut is not None
    assert [e["type"] for e in cut.events] == ["conversation.item.truncate"]


def test_cancel_is_not_repeated_for_the_same_response_until_rejected() -> None:
    _, barge = _setup(server_interrupts=False)
    barge.response_created("resp_1")
    first = barge.speech_started()
    second = barge.speech_started()
    assert first is not None and [e["type"] for e in first.events] == ["response.cancel"]
    assert second is not None and second.events == []


def test_echo_guard_ignores_short_bursts_and_confirms_long_speech() -> None:
    playout, barge = _setup(server_interrupts=False, echo_guard_ms=100, echo_guard_dbfs=-40)
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 2000)
    _pull(playout, 10)
    assert barge.speech_started() is None  # held: the agent is talking
    assert barge.caller_audio(20, -30) is None
    assert barge.caller_audio(20, -60) is None  # quiet frames do not count
    barge.speech_stopped()  # only 20 ms of energy: echo
    assert not barge.barge_in_pending
    assert playout.queued_samples > 0  # the agent kept talking

    assert barge.speech_started() is None
    results = [barge.caller_audio(20, -25) for _ in range(5)]
    assert results[:4] == [None] * 4
    cut = results[4]
    assert cut is not None and cut.item_id == "item_a"
    assert [e["type"] for e in cut.events] == ["conversation.item.truncate", "response.cancel"]
    assert playout.queued_samples == 0


def test_echo_guard_does_not_delay_barge_in_when_agent_is_silent() -> None:
    _, barge = _setup(echo_guard_ms=200)
    cut = barge.speech_started()
    assert cut is not None


def test_only_a_turn_that_cuts_agent_audio_counts_as_a_barge_in() -> None:
    playout, barge = _setup()
    quiet = barge.speech_started()  # the agent was silent: nothing to cut
    assert quiet is not None and not quiet.cut and barge.interruptions == 0
    barge.response_created("resp_1")
    _deliver(barge, playout, "resp_1", "item_a", 1000)
    _pull(playout, 5)
    cut = barge.speech_started()
    assert cut is not None and cut.cut and barge.interruptions == 1
    again = barge.speech_started()  # the same turn, nothing left playing
    assert again is not None and not again.cut and barge.interruptions == 1
