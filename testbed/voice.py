"""Speech for the voice backend's tests and benchmark: phrases spoken by the backend's own
text-to-speech, brought down to telephone quality, and ways to score what comes back."""

from __future__ import annotations

import re
from functools import cache

import numpy as np
import soxr

from agent.audio.g711 import ulaw_decode, ulaw_encode
from agent.local.models import voice_models

#: Test phrases and the intent of config/local_brain.toml each should trigger.
PHRASES: dict[str, str] = {
    "What are your opening hours?": "opening_hours",
    "I would like to know where my order is.": "order_status",
    "Can I speak to a real person, please?": "transfer",
    "Do you sell garden furniture?": "fallback",
    "Goodbye, and thank you.": "goodbye",
}


@cache
def spoken(text: str) -> np.ndarray:
    """``text`` as 24 kHz PCM16, in the backend's own voice (cached: Piper varies a little
    from run to run, and a test compares against the same audio it sent)."""
    return np.concatenate(list(voice_models().tts().synthesize(text)))


def telephone(pcm24k: np.ndarray) -> np.ndarray:
    """8 kHz PCM16 as a phone line delivers it: band-limited and through G.711 mu-law."""
    narrow = np.clip(np.round(soxr.resample(pcm24k, 24000, 8000)), -32768, 32767)
    return np.frombuffer(ulaw_decode(ulaw_encode(narrow.astype("<i2").tobytes())), dtype="<i2")


def speech_bounds_ms(pcm: np.ndarray, rate: int) -> tuple[float, float]:
    """Where speech starts and ends: the first and last 10 ms frame within 40 dB of the
    loudest one (the truth a VAD's boundaries are checked against)."""
    frame = rate // 100
    count = len(pcm) // frame
    power = np.mean(pcm[: count * frame].astype(np.float64).reshape(count, frame) ** 2, axis=1)
    level = 10 * np.log10(power + 1e-9)
    loud = np.nonzero(level > level.max() - 40)[0]
    return float(loud[0] * 10), float((loud[-1] + 1) * 10)


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def word_error_rate(reference: str, hypothesis: str) -> float:
    """Word-level edit distance over the reference's length."""
    ref, hyp = words(reference), words(hypothesis)
    row = list(range(len(hyp) + 1))
    for i, word in enumerate(ref, 1):
        previous, row[0] = row[0], i
        for j, other in enumerate(hyp, 1):
            previous, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, previous + (word != other))
    return row[len(hyp)] / max(len(ref), 1)
