"""Streaming replies: splitting text for speech, the worker-to-loop hand-off, wire framing."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from agent.audio.codecs import PCM16, PCMU
from agent.local.replies import Reply, ReplyPlan, ToolCall
from agent.local.reply_source import Pending, ReplySource
from agent.local.reply_stream import ReplyStream, start_reply
from agent.local.speech_text import split_for_speech
from tests.local_helpers import tone


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("Hello.", ["Hello."]),
        ("Thank you for calling. How can I help?", ["Thank you for calling.", "How can I help?"]),
        (
            "We are open Monday to Saturday, from nine to six.",
            ["We are open Monday to Saturday,", "from nine to six."],
        ),
        # Too short a clause to be worth its own piece.
        ("Yes, I can help with that!", ["Yes, I can help with that!"]),
        ("Dr. Smith opens at 9 a.m. sharp.", ["Dr. Smith opens at 9 a.m. sharp."]),
        (
            "It costs 3.50 today; tomorrow it is gone",
            ["It costs 3.50 today;", "tomorrow it is gone"],
        ),
        ('He said "stop." Then left.', ['He said "stop."', "Then left."]),
        ("", []),
        ("  no   punctuation at all  ", ["no punctuation at all"]),
    ],
)
def test_split_for_speech(text: str, pieces: list[str]) -> None:
    assert split_for_speech(text) == pieces
    assert " ".join(pieces) == " ".join(text.split())


def test_stream_hands_plan_then_audio_then_end() -> None:
    stream = ReplyStream()
    wakes: list[int] = []
    stream.set_waker(lambda: wakes.append(1))
    assert stream.plan is None and stream.read() is None and not stream.finished
    stream.set_plan(ReplyPlan("Hi.", ToolCall("end_call", "{}")))
    stream.put_audio(b"\x01\x00" * 10)
    stream.put_audio(b"")  # nothing to hand over: no wake-up either
    assert stream.plan == ReplyPlan("Hi.", ToolCall("end_call", "{}"))
    assert stream.read() == b"\x01\x00" * 10
    assert not stream.finished
    stream.finish()
    stream.finish(RuntimeError("too late"))  # only the first finish counts
    assert stream.finished and stream.error is None
    assert len(wakes) == 3


def test_a_waker_set_late_is_called_for_what_is_already_there() -> None:
    stream = ReplyStream()
    stream.set_plan(ReplyPlan("Hi."))
    wakes: list[int] = []
    stream.set_waker(lambda: wakes.append(1))
    assert wakes == [1]


def test_cancel_drops_queued_audio_and_tells_the_producer() -> None:
    stream = ReplyStream()
    stream.put_audio(b"\x00\x00" * 4)
    stream.cancel()
    assert stream.cancelled
    stream.put_audio(b"\x00\x00" * 4)
    assert stream.read() is None


def test_start_reply_runs_the_producer_on_the_executor() -> None:
    release = threading.Event()

    def produce(stream: ReplyStream) -> None:
        stream.set_plan(ReplyPlan("Hello there."))
        release.wait(5)
        stream.put_audio(tone(100).astype("<i2").tobytes())

    with ThreadPoolExecutor(1) as executor:
        woken = threading.Event()
        stream = start_reply(executor, produce)
        stream.set_waker(woken.set)
        assert woken.wait(5)
        assert stream.plan == ReplyPlan("Hello there.")
        release.set()
    assert stream.finished is False  # the audio is still queued
    assert stream.read() is not None and stream.finished


def test_a_failing_producer_ends_the_stream_with_its_error() -> None:
    def produce(stream: ReplyStream) -> None:
        raise RuntimeError("no voice")

    with ThreadPoolExecutor(1) as executor:
        stream = start_reply(executor, produce)
    assert stream.finished
    assert isinstance(stream.error, RuntimeError)


def test_source_over_a_stream_waits_frames_and_ends() -> None:
    stream = ReplyStream()
    source = ReplySource(stream, PCMU, 50, audio=True)
    assert source.plan() is None
    assert source.next_chunk() is Pending.WAIT
    stream.set_plan(ReplyPlan("Hi."))
    assert source.plan() == ReplyPlan("Hi.")
    # 130 ms of 24 kHz audio in odd-sized pieces comes out as 50 ms G.711 chunks at 8 kHz.
    # (The resampler holds ~40 ms back, so the first 100 ms give one whole chunk.)
    audio = tone(130).astype("<i2").tobytes()
    stream.put_audio(audio[: 2401 * 2])
    first = source.next_chunk()
    assert isinstance(first, bytes) and len(first) == 400
    assert source.next_chunk() is Pending.WAIT
    stream.put_audio(audio[2401 * 2 :])
    stream.finish()
    rest: list[bytes] = []
    while isinstance(chunk := source.next_chunk(), bytes):
        rest.append(chunk)
    assert chunk is Pending.END
    total = len(first) + sum(len(c) for c in rest)
    assert total == pytest.approx(8000 * 0.13, abs=2)


def test_source_raises_the_producers_error() -> None:
    stream = ReplyStream()
    source = ReplySource(stream, PCM16, 50, audio=True)
    stream.finish(RuntimeError("speech-to-text broke"))
    with pytest.raises(RuntimeError, match="speech-to-text broke"):
        source.plan()


def test_source_over_a_plain_reply_is_ready_at_once() -> None:
    samples = tone(120)
    reply = Reply("Okay.", iter([samples.astype("<i2").tobytes()]), ToolCall("end_call", "{}"))
    source = ReplySource(reply, PCM16, 50, audio=True)
    assert source.plan() == ReplyPlan("Okay.", ToolCall("end_call", "{}"))
    chunks: list[bytes] = []
    while isinstance(chunk := source.next_chunk(), bytes):
        chunks.append(chunk)
    assert np.array_equal(np.frombuffer(PCM16.decode(b"".join(chunks)), dtype="<i2"), samples)
    text_only = ReplySource(Reply("Okay.", iter([b"\x00\x00"])), PCM16, 50, audio=False)
    assert text_only.next_chunk() is Pending.END
