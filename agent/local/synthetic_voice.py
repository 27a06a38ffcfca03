"""The synthetic backend's voice: fixed reply text and a deterministic voice-like signal.

Instant and model-free, so the bridge tests and benchmarks get audible, speech-shaped replies
without text-to-speech.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator

import numpy as np

from agent.local.replies import RATE, Reply, ReplyRequest

_LEVEL_DBFS = -16.0
_SYLLABLE_S = 0.17
_GAP_S = 0.06
_WORD_GAP_S = 0.05
_MIN_S = 1.5
_MAX_S = 3.0
_CHUNK_S = 0.1
# (F1, F2) pairs of a few vowels; cycling through them gives the bursts a speech-like timbre.
_VOWELS = ((730.0, 1090.0), (270.0, 2290.0), (530.0, 1840.0), (570.0, 840.0), (440.0, 1020.0))
_FORMANT_BANDWIDTH_HZ = 110.0


class SyntheticResponder:
    """Replies with fixed text and a deterministic voice-like signal (no TTS needed).

    The audio is one syllable-shaped burst of a ~200 Hz harmonic tone per syllable of the
    text, with formant-weighted partials, normalised to about -16 dBFS while voiced and
    clamped to 1.5..3 s overall, so it is audible on a phone and obviously not silence.
    """

    def reply(self, request: ReplyRequest) -> Reply:
        if request.say is not None:
            text = request.say
        elif request.user_text:
            text = f'You said: "{request.user_text}". I am the local test agent.'
        else:
            text = "You said something. I am the local test agent."
        # Nothing to say is silence, not the shortest utterance the voice makes.
        audio = _chunks(synthesize_voice(text)) if text.strip() else iter(())
        return Reply(text=text, audio=audio)


def synthesize_voice(text: str) -> np.ndarray:
    """PCM16 24 kHz samples of a voice-like signal for ``text``; same text, same samples."""
    words = [_syllables(word) for word in text.split()] or [1]
    natural = sum(n * (_SYLLABLE_S + _GAP_S) + _WORD_GAP_S for n in words)
    stretch = min(max(natural, _MIN_S), _MAX_S) / natural
    out: list[np.ndarray] = []
    index = 0
    for count in words:
        for _ in range(count):
            out.append(_syllable(index, _SYLLABLE_S * stretch))
            out.append(np.zeros(int(_GAP_S * stretch * RATE)))
            index += 1
        out.append(np.zeros(int(_WORD_GAP_S * stretch * RATE)))
    signal = np.concatenate(out)
    voiced = signal[np.abs(signal) > 1e-9]
    rms = float(np.sqrt(np.mean(np.square(voiced)))) if voiced.size else 1.0
    gain = 32768.0 * 10.0 ** (_LEVEL_DBFS / 20.0) / rms
    samples: np.ndarray = np.clip(signal * gain, -32768, 32767).astype(np.int16)
    return samples


def _syllables(word: str) -> int:
    return max(1, len(re.findall(r"[aeiouy]+", word.lower())))


def _syllable(index: int, duration_s: float) -> np.ndarray:
    n = int(duration_s * RATE)
    t = np.arange(n) / RATE
    # A falling pitch within the syllable and a slow declination across the utterance.
    f0_start = 215.0 - 2.0 * index + 12.0 * ((index * 7) % 3 - 1)
    f0 = f0_start - 25.0 * t / duration_s
    phase = 2.0 * math.pi * np.cumsum(f0) / RATE
    f1, f2 = _VOWELS[index % len(_VOWELS)]
    wave = np.zeros(n)
    nyquist = RATE / 2
    mean_f0 = float(np.mean(f0))
    for k in range(1, int(4000.0 / mean_f0) + 1):
        freq = k * mean_f0
        if freq >= nyquist:
            break
        # A flat floor keeps every harmonic (the buzz of a voice); the resonances add vowels.
        weight = (0.1 + _resonance(freq, f1) + 0.6 * _resonance(freq, f2)) / k**0.5
        wave += weight * np.sin(k * phase)
    # Raised-cosine attack and release, like a syllable's amplitude envelope.
    envelope = np.sin(np.pi * np.arange(n) / n) ** 1.5
    return wave * envelope


def _resonance(freq: float, formant: float) -> float:
    return 1.0 / (1.0 + ((freq - formant) / _FORMANT_BANDWIDTH_HZ) ** 2)


def _chunks(samples: np.ndarray) -> Iterator[bytes]:
    step = int(_CHUNK_S * RATE)
    for start in range(0, len(samples), step):
        yield samples[start : start + step].astype("<i2").tobytes()
