"""The synthetic reply voice: audible, voice-like, deterministic."""

from __future__ import annotations

import numpy as np

from agent.audio.levels import rms_dbfs
from agent.local.replies import RATE, ReplyRequest
from agent.local.synthetic_voice import SyntheticResponder, synthesize_voice


def test_voice_is_deterministic_and_sized_like_a_short_reply() -> None:
    short = synthesize_voice("Hi.")
    long = synthesize_voice("word " * 80)
    assert np.array_equal(short, synthesize_voice("Hi."))
    assert abs(len(short) / RATE - 1.5) < 0.05
    assert abs(len(long) / RATE - 3.0) < 0.05


def test_voice_level_and_pitch() -> None:
    samples = synthesize_voice("You said something. I am the local test agent.")
    voiced = samples[np.abs(samples) > 300]
    # -19..-13 on the old reference (tests/local_helpers.py): about the -16 it aims at.
    assert -16 < rms_dbfs(voiced.tobytes()) < -10
    assert np.abs(samples).max() < 32767  # no clipping
    # Syllable bursts with gaps: a good share of 10 ms frames is near-silent.
    frames = samples[: len(samples) // 240 * 240].reshape(-1, 240)
    quiet = np.mean([rms_dbfs(frame.tobytes()) < -37 for frame in frames])  # -40 before
    assert 0.1 < quiet < 0.6
    # Pitch: the harmonic spacing (autocorrelation peak) sits near 200 Hz.
    loudest = int(np.argmax([rms_dbfs(f.tobytes()) for f in frames])) * 240
    segment = samples[max(loudest - 1200, 0) :][:2400].astype(np.float64)
    corr = np.correlate(segment, segment, "full")[len(segment) - 1 :]
    lag = np.argmax(corr[RATE // 400 : RATE // 100]) + RATE // 400
    assert 150 < RATE / lag < 260


def test_responder_returns_text_and_matching_chunks() -> None:
    reply = SyntheticResponder().reply(ReplyRequest("", None, b"", 24000))
    assert reply.text == "You said something. I am the local test agent."
    audio = b"".join(reply.audio)
    assert np.array_equal(np.frombuffer(audio, dtype="<i2"), synthesize_voice(reply.text))
    echoed = SyntheticResponder().reply(ReplyRequest("", "hi", b"", 24000))
    assert echoed.text == 'You said: "hi". I am the local test agent.'
