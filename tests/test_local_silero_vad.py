"""Silero VAD turn boundaries on real (synthesized) speech at telephone quality.

The phrases are spoken by the backend's own voice, band-limited to 8 kHz through mu-law; the
speech's true start and end come from the audio's energy. The reported ``audio_start_ms``
(less the prefix padding) and ``audio_end_ms`` (less the silence duration) must land within
100 ms of them.
"""

from __future__ import annotations

import numpy as np
import pytest
import soxr

from agent.local.silero_vad import SileroPool, SileroVad, silero_pool, silero_vad_factory
from agent.local.vad import VadConfig
from agent.realtime.dialect import Dialect
from testbed.voice import PHRASES, speech_bounds_ms, spoken, telephone
from tests.local_helpers import noise, server_vad, session_update, silence, tone
from tests.test_local_protocol import Harness, one, types

LEAD_MS, TAIL_MS = 700, 1200


def phrase_turn(text: str) -> np.ndarray:
    """8 kHz telephone audio: silence, the phrase, silence."""
    return np.concatenate([silence(LEAD_MS, 8000), telephone(spoken(text)), silence(TAIL_MS, 8000)])


@pytest.mark.parametrize("text", list(PHRASES)[:3])
@pytest.mark.parametrize("codec", ["pcmu", "pcm16"])
def test_turn_boundaries_follow_the_speech(text: str, codec: str) -> None:
    padding, silence_ms = 300, 500
    h = Harness(Dialect.GA, vad_factory=silero_vad_factory)
    vad = server_vad(prefix_padding_ms=padding, silence_duration_ms=silence_ms)
    h.send(session_update(Dialect.GA, turn_detection=vad, codec=codec))
    audio = phrase_turn(text)
    true_start, true_end = speech_bounds_ms(audio, 8000)
    if codec == "pcm16":
        # What the agent sends for a call: the line's 8 kHz lifted to 24 kHz.
        audio = np.round(soxr.resample(audio, 8000, 24000)).astype(np.int16)
    events = h.speak(audio, codec=codec, rate=8000 if codec == "pcmu" else 24000)
    kinds = [t for t in types(events) if t.startswith("input_audio_buffer.speech")]
    assert kinds == ["input_audio_buffer.speech_started", "input_audio_buffer.speech_stopped"]
    started = one(events, "input_audio_buffer.speech_started")["audio_start_ms"] + padding
    stopped = one(events, "input_audio_buffer.speech_stopped")["audio_end_ms"] - silence_ms
    assert abs(started - true_start) <= 100, (started, true_start)
    assert abs(stopped - true_end) <= 100, (stopped, true_end)


# -30 and -45 on the old reference (tests/local_helpers.py): loud and ordinary line noise.
@pytest.mark.parametrize("dbfs", [-27.0, -42.0])
def test_no_false_alarms_in_line_noise(dbfs: float) -> None:
    hiss = noise(8000 * 8, dbfs, seed=7)
    vad = SileroVad(8000, VadConfig(), silero_pool())
    try:
        events = [e for i in range(0, len(hiss), 160) for e in vad.process(hiss[i : i + 160])]
    finally:
        vad.close()
    assert events == []


def test_a_pure_tone_is_not_speech() -> None:
    # A dial tone or a fax: energy without a voice fools an energy detector, not Silero.
    vad = SileroVad(8000, VadConfig(), silero_pool())
    try:
        loud = tone(3000, 8000, dbfs=-12)  # -15 on the old reference (tests/local_helpers.py)
        assert vad.process(np.concatenate([loud, silence(500, 8000)])) == []
    finally:
        vad.close()


def test_boundaries_do_not_depend_on_chunking() -> None:
    audio = phrase_turn(next(iter(PHRASES)))
    pool = SileroPool()
    runs = []
    for block in (160, 517, 8000):
        vad = SileroVad(8000, VadConfig(silence_duration_ms=400), pool)
        runs.append(
            [e for i in range(0, len(audio), block) for e in vad.process(audio[i : i + block])]
        )
        vad.close()
    assert runs[0] == runs[1] == runs[2]
    assert [e.kind for e in runs[0]] == ["start", "stop"]


def test_models_are_pooled_not_reloaded_per_turn() -> None:
    pool = SileroPool()
    detectors = [SileroVad(24000, VadConfig(), pool) for _ in range(2)]
    for detector in detectors:
        detector.close()
    for _ in range(5):
        SileroVad(8000, VadConfig(), pool).close()
    assert pool.created == 2
