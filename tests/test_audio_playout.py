"""Playout buffer: fixed frames, silence on underrun, exact per-item accounting, threads."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from agent.audio.playout import MAX_TRACKED_ITEMS, Playout

FRAME = 320  # bytes: 160 samples of PCM16 at 8 kHz = 20 ms


def ramp(start: int, n: int) -> bytes:
    """n distinct non-zero samples, so any loss, repeat or reordering is visible."""
    return (np.arange(start, start + n, dtype=np.int64) % 30000 + 1).astype("<i2").tobytes()


def test_pull_returns_exact_frames_and_silence_when_idle() -> None:
    p = Playout()
    for _ in range(3):
        frame = p.pull()
        assert frame == bytes(FRAME)
    assert (p.frames_pulled, p.underruns, p.padded_frames) == (3, 3, 0)
    assert p.current_item is None


def test_audio_comes_out_in_order_then_pads_the_partial_tail() -> None:
    p = Playout()
    audio = ramp(0, 400)  # 2.5 frames
    p.push("a", audio)
    out = [p.pull() for _ in range(4)]
    assert all(len(f) == FRAME for f in out)
    assert b"".join(out[:2]) == audio[: 2 * FRAME]
    assert out[2] == audio[2 * FRAME :] + bytes(FRAME - 160)  # 80 samples, then silence
    assert out[3] == bytes(FRAME)
    assert (p.padded_frames, p.underruns) == (1, 1)
    assert p.played_samples("a") == p.received_samples("a") == 400
    assert p.queued_samples == 0


def test_frame_straddling_two_items_is_split_exactly() -> None:
    p = Playout()
    p.push("a", ramp(0, 100))
    p.push("b", ramp(100, 300))
    assert p.current_item == "a"
    first = p.pull()
    assert first == ramp(0, 160)  # 100 samples of a, then 60 of b, seamlessly
    assert (p.played_samples("a"), p.played_samples("b")) == (100, 60)
    assert p.current_item == "b"
    p.pull()
    assert p.played_samples("b") == 220
    p.pull()
    assert (p.played_samples("a"), p.played_samples("b")) == (100, 300)
    assert p.received_samples("b") == 300
    assert p.played_ms("b") == 37  # 300 samples = 37.5 ms, rounded down: heard at most that


def test_many_small_pushes_fill_one_frame() -> None:
    p = Playout()
    for i in range(16):
        p.push("a" if i < 10 else "b", ramp(i * 10, 10))
    assert p.pull() == ramp(0, 160)
    assert (p.played_samples("a"), p.played_samples("b")) == (100, 60)
    assert p.padded_frames == 0


def test_flush_reports_item_cut_mid_playback() -> None:
    p = Playout()
    p.push("a", ramp(0, 500))
    p.push("b", ramp(500, 500))
    p.pull()
    p.pull()
    assert p.flush() == ("a", 320)
    assert p.queued_samples == 0
    assert p.pull() == bytes(FRAME)
    assert p.played_samples("a") == 320  # history survives the flush
    assert p.flush() == (None, 0)  # nothing new was cut


def test_flush_names_next_item_when_previous_finished_exactly() -> None:
    p = Playout()
    p.push("a", ramp(0, 160))
    p.push("b", ramp(160, 320))
    p.pull()  # a ends exactly on the frame edge; b has not started
    assert p.flush() == ("b", 0)


def test_flush_on_dry_queue_names_the_item_still_being_streamed() -> None:
    # The model is slower than real time: a's audio ran out but more may be on the way.
    p = Playout()
    p.push("a", ramp(0, 200))
    p.pull()
    p.pull()
    assert p.current_item == "a"
    assert p.flush() == ("a", 200)


def test_buffer_cap_drops_excess_and_counts_it() -> None:
    p = Playout(max_buffer_ms=100)  # 800 samples
    p.push("a", ramp(0, 600))
    p.push("a", ramp(600, 600))
    assert p.queued_samples == 800
    assert p.received_samples("a") == 800
    assert p.dropped_samples == 400
    out = b"".join(p.pull() for _ in range(5))
    assert out == ramp(0, 800)


def test_old_item_counters_are_forgotten() -> None:
    p = Playout()
    n_items = MAX_TRACKED_ITEMS + 10
    for i in range(n_items):
        p.push(f"old{i}", ramp(i, 2))
    p.pull()  # all 2 * n_items samples fit one frame: every item has finished playing
    p.push("new", ramp(0, 2))  # a new item triggers the clean-up
    assert p.received_samples("old0") == 0  # forgotten
    assert p.played_samples(f"old{n_items - 1}") == 2  # recent ones are kept
    remembered = sum(p.received_samples(f"old{i}") > 0 for i in range(n_items))
    assert remembered == MAX_TRACKED_ITEMS - 1  # plus "new"


def test_items_with_queued_audio_are_never_forgotten() -> None:
    p = Playout()
    for i in range(MAX_TRACKED_ITEMS + 10):
        p.push(f"q{i}", ramp(i, 1))
    assert p.received_samples("q0") == 1
    p.pull()
    assert p.played_samples("q0") == 1


def test_rejects_odd_byte_count() -> None:
    p = Playout()
    with pytest.raises(ValueError, match="odd byte count"):
        p.push("a", b"\x01\x02\x03")
    assert p.queued_samples == 0


def test_custom_frame_size() -> None:
    p = Playout(frame_samples=480, sample_rate=24000)
    p.push("a", ramp(0, 500))
    assert p.pull() == ramp(0, 480)
    assert len(p.pull()) == 960


def test_concurrent_push_and_pull_lose_nothing() -> None:
    p = Playout()
    items = [(f"item{i}", 37 + (i * 53) % 700) for i in range(200)]
    expected = b"".join(ramp(sum(n for _, n in items[:i]), n) for i, (_, n) in enumerate(items))
    total = sum(n for _, n in items)
    frames: list[bytes] = []
    done = threading.Event()

    def clock() -> None:
        # The media thread: pulls until every pushed sample came out, then a bit more.
        while not done.is_set() or p.queued_samples:
            frames.append(p.pull())
            time.sleep(0)

    thread = threading.Thread(target=clock)
    thread.start()
    offset = 0
    for item_id, n in items:
        p.push(item_id, ramp(offset, n))
        offset += n
        time.sleep(0)  # let the clock thread in between pushes
    done.set()
    thread.join(timeout=10)
    assert not thread.is_alive()
    print(f"{len(frames)} frames, {p.underruns} underruns, {p.padded_frames} padded")

    assert all(len(f) == FRAME for f in frames)
    assert len(frames) == p.frames_pulled
    audio = np.frombuffer(b"".join(frames), dtype="<i2")
    assert audio[audio != 0].tobytes() == expected  # ramp samples are never zero
    recent = [item_id for item_id, _ in items[-MAX_TRACKED_ITEMS:]]
    played = sum(p.played_samples(i) for i in recent)
    received = sum(p.received_samples(i) for i in recent)
    assert played == received == sum(n for _, n in items[-MAX_TRACKED_ITEMS:])
    assert total == len(expected) // 2


def test_gap_frames_count_only_silence_inside_an_item() -> None:
    p = Playout()
    p.push("a", ramp(0, 160))
    p.pull()
    p.pull()  # "a" ran dry: a gap only if more of "a" comes
    p.pull()
    assert p.gap_frames == 0
    p.push("a", ramp(160, 80))  # late audio of "a": the two silent pulls were a gap
    assert p.gap_frames == 2
    p.pull()  # half a frame of "a", then silence: padded
    p.pull()
    p.push("b", ramp(0, 160))  # a new item after silence: a pause between turns, no gap
    assert p.gap_frames == 2
    assert p.stats() == {
        "frames_pulled": 5,
        "underruns": 3,
        "padded_frames": 1,
        "gap_frames": 2,
        "dropped_samples": 0,
        "paused_pulls": 0,
    }


def test_paused_playout_sends_silence_and_keeps_its_audio() -> None:
    p = Playout()
    p.push("a", ramp(0, 320))
    assert p.pull() == ramp(0, 160)
    p.paused = True  # the far end holds the call
    assert p.pull() == bytes(320)
    assert (p.queued_samples, p.underruns, p.paused_pulls) == (160, 0, 1)
    p.paused = False
    assert p.pull() == ramp(160, 160)  # nothing was lost while held
    assert p.played_samples("a") == 320


def test_each_flush_is_counted() -> None:
    p = Playout()
    p.push("a", ramp(0, 160))
    p.flush()
    p.flush()
    assert p.flushes == 2


def test_flush_forgets_a_pending_gap() -> None:
    p = Playout()
    p.push("a", ramp(0, 160))
    p.pull()
    p.pull()
    p.flush()  # barge-in: the silence after it is wanted
    p.pull()
    p.push("a", ramp(160, 160))  # stale audio of the cut item arriving late
    assert p.gap_frames == 0
