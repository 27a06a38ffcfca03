"""What the local server says back: the reply text, its audio, and maybe a function call.

The protocol asks a ``Responder`` for each response and streams whatever it returns, so a
real STT/LLM/TTS chain can replace ``SyntheticResponder`` without touching the protocol. A
responder answers either at once with a ``Reply`` (cheap, synchronous: the synthetic voice,
test doubles) or with a ``ReplyStream`` that a worker thread fills while the event loop goes
on (speech-to-text and text-to-speech take hundreds of milliseconds).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

if TYPE_CHECKING:
    from agent.local.reply_stream import ReplyStream

RATE = 24000
"""Responders produce PCM16 mono little-endian audio at this rate (the API's native rate)."""


@dataclass(frozen=True)
class ToolCall:
    """A function call the reply makes after (or instead of) speaking."""

    name: str
    arguments: str
    """The arguments as a JSON object text, as the API sends them."""


@dataclass(frozen=True)
class ToolResult:
    """The client's answer to an earlier function call (a ``function_call_output`` item)."""

    name: str
    arguments: str
    output: str


@dataclass(frozen=True)
class ReplyRequest:
    """What a responder may use to decide what to say.

    ``user_audio`` is the latest user turn's audio (PCM16 at ``user_audio_rate``; empty when
    the turn was text), ``user_text`` its text when the client sent a text message.
    ``user_transcript`` blocks until that turn's speech-to-text is done (call it from a
    worker thread only); ``tool_result`` is set when the conversation ends with a function
    call's output; ``tools`` maps the functions the session lets the model call to the JSON
    schemas of their arguments;
    ``idle`` says the response was triggered by the idle timeout; ``audio`` says whether the
    response wants audio at all (text-only responses need no speech synthesis).
    """

    instructions: str
    user_text: str | None
    user_audio: bytes
    user_audio_rate: int
    user_transcript: Callable[[], str] | None = None
    tool_result: ToolResult | None = None
    tools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    idle: bool = False
    audio: bool = True


@dataclass(frozen=True)
class Reply:
    """A reply: its transcript, its audio as PCM16 24 kHz chunks of any size, and an optional
    function call made once the speech is done."""

    text: str
    audio: Iterator[bytes]
    tool_call: ToolCall | None = field(default=None)


class Responder(Protocol):
    def reply(self, request: ReplyRequest) -> Reply | ReplyStream: ...


class Transcriber(Protocol):
    """Speech-to-text of committed user turns, run off the event loop."""

    def submit(self, pcm: bytes, rate: int) -> Future[str]:
        """Start transcribing PCM16 mono ``pcm`` at ``rate``; the future holds the text."""
        ...


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
        if request.user_text:
            text = f'You said: "{request.user_text}". I am the local test agent.'
        else:
            text = "You said something. I am the local test agent."
        return Reply(text=text, audio=_chunks(synthesize_voice(text)))


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
    return np.clip(signal * gain, -32768, 32767).astype(np.int16)


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
