"""What outbound calls' callees sound like, for answering-machine detection: a person saying
"hello?" and waiting, a voicemail greeting and its beep, line noise. PCM16 LE mono at 8 or
16 kHz, deterministic (seeded), with the truth the detector is scored against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from agent.audio.levels import tone
from testbed.peers import speech_like

HUMAN = "human"
MACHINE = "machine"
UNKNOWN = "unknown"


@dataclass(frozen=True)
class CalleeAudio:
    """A callee's audio from the answer on, and what a detector should find in it."""

    name: str
    pcm: bytes
    rate: int
    expected: str
    #: Where the greeting's speech begins (ms after the answer), when there is one.
    speech_ms: int | None = None
    #: Where the beep begins and ends (ms after the answer), when there is one.
    beep_ms: int | None = None
    beep_end_ms: int | None = None

    @property
    def ms(self) -> int:
        return len(self.pcm) // 2 * 1000 // self.rate


def _silence(ms: int, rate: int) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def _words(total_ms: int, rate: int, seed: int) -> np.ndarray:
    """Speech-like words of 150-550 ms with the short gaps of fluent speech (60-250 ms)
    between them, ``total_ms`` long in all, ending on a word."""
    rng = np.random.default_rng(seed)
    parts: list[np.ndarray] = []
    made = 0
    while made < total_ms:
        word = min(int(rng.integers(150, 550)), total_ms - made)
        parts.append(speech_like(word / 1000, rate, dbfs=float(rng.uniform(-18, -12))))
        made += word
        if made + 300 < total_ms:
            gap = int(rng.integers(60, 250))
            parts.append(_silence(gap, rate))
            made += gap
    return np.concatenate(parts)


def hello(rate: int = 8000, lead_ms: int = 300, tail_ms: int = 4000) -> CalleeAudio:
    """A person: a moment, "hello?" (0.6 s of speech), then silence while they wait."""
    pcm = np.concatenate([_silence(lead_ms, rate), speech_like(0.6, rate), _silence(tail_ms, rate)])
    return CalleeAudio("hello", pcm.tobytes(), rate, HUMAN, speech_ms=lead_ms)


def voicemail(
    rate: int = 8000,
    greeting_ms: int = 6000,
    beep_hz: float = 1000.0,
    beep_len_ms: int = 500,
    pause_ms: int = 400,
    lead_ms: int = 200,
    tail_ms: int = 3000,
    seed: int = 1,
) -> CalleeAudio:
    """A voicemail: a continuous greeting, a short pause, the beep, then the silence it
    records (``beep_len_ms`` 0: no beep, the greeting just stops)."""
    parts = [_silence(lead_ms, rate), _words(greeting_ms, rate, seed), _silence(pause_ms, rate)]
    beep_ms = (sum(len(p) for p in parts) * 1000 // rate) if beep_len_ms else None
    if beep_len_ms:
        parts.append(np.frombuffer(tone(beep_hz, beep_len_ms, rate, dbfs=-10.0), dtype="<i2"))
    parts.append(_silence(tail_ms, rate))
    pcm = np.concatenate(parts)
    end = beep_ms + beep_len_ms if beep_ms is not None else None
    return CalleeAudio(
        "voicemail" if beep_len_ms else "voicemail_no_beep",
        pcm.tobytes(),
        rate,
        MACHINE,
        speech_ms=lead_ms,
        beep_ms=beep_ms,
        beep_end_ms=end,
    )


def silence(rate: int = 8000, ms: int = 7000) -> CalleeAudio:
    """Someone picked up and says nothing."""
    return CalleeAudio("silence", _silence(ms, rate).tobytes(), rate, UNKNOWN)


def noise(rate: int = 8000, ms: int = 7000, dbfs: float = -35.0, seed: int = 7) -> CalleeAudio:
    """Nothing but steady line noise."""
    pcm = with_noise(_silence(ms, rate).tobytes(), dbfs, seed)
    return CalleeAudio("noise", pcm, rate, UNKNOWN)


def with_noise(pcm: bytes, dbfs: float, seed: int = 7) -> bytes:
    """``pcm`` with white noise of RMS ``dbfs`` (AES17, like ``agent.audio.levels``) added."""
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    rng = np.random.default_rng(seed)
    sigma = 32767 * 10 ** (dbfs / 20) / np.sqrt(2)
    mixed = samples + rng.normal(0.0, sigma, samples.size)
    return np.clip(np.round(mixed), -32768, 32767).astype("<i2").tobytes()


def noisy(audio: CalleeAudio, dbfs: float, seed: int = 7) -> CalleeAudio:
    """``audio`` over line noise of ``dbfs``; the truth stays."""
    return CalleeAudio(
        f"{audio.name}+noise{dbfs:g}",
        with_noise(audio.pcm, dbfs, seed),
        audio.rate,
        audio.expected,
        audio.speech_ms,
        audio.beep_ms,
        audio.beep_end_ms,
    )


def frames(audio: CalleeAudio, frame_ms: int = 20) -> list[bytes]:
    """The audio as the line delivers it: consecutive 20 ms frames."""
    size = audio.rate * frame_ms // 1000 * 2
    return [audio.pcm[i : i + size] for i in range(0, len(audio.pcm) - size + 1, size)]
