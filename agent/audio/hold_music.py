"""Music on hold: what a caller hears while the agent holds the call (around a transfer).

The operator's WAV (``tools.music_on_hold``; 16-bit, mono or stereo, any rate) is read once
when the profile is loaded and resampled once per call rate (soxr, the project's resampler);
without a file, a gentle built-in loop made here (soft chords, no recording copied). Either
plays in a loop (:class:`MusicLoop`), taken a piece at a time into the call's playout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from agent.audio.levels import FULL_SCALE
from agent.audio.pcm import to_bytes
from agent.audio.resample import SOXR_DEFAULT_QUALITY, resample
from agent.audio.wav_file import WavFileError, read_mono_pcm16

#: A longer file is most likely the wrong one (a whole album); refused at start.
MAX_MUSIC_S = 300
#: The built-in loop: four soft chords (Cmaj7, Am7, Fmaj7, G6), one into the next,
#: low in the telephone band and well below speech level, so it reads as "still connected".
_CHORDS_HZ = (
    (261.6, 329.6, 392.0, 493.9),
    (220.0, 261.6, 329.6, 392.0),
    (174.6, 220.0, 261.6, 329.6),
    (196.0, 246.9, 293.7, 329.6),
)
_CHORD_MS = 2000
_FADE_MS = 600
_LEVEL_DBFS = -26.0
BUILTIN = "built-in"


class MusicError(Exception):
    """The music file cannot be used; ``str()`` says why in one line."""


@dataclass(frozen=True)
class HoldMusic:
    """Mono PCM16 LE audio at ``rate``, and where it came from (a path, or ``"built-in"``)."""

    pcm: bytes
    rate: int
    source: str
    _by_rate: dict[int, bytes] = field(default_factory=dict, compare=False, repr=False)

    def at_rate(self, rate: int) -> bytes:
        """The music as PCM16 at ``rate`` (the call's), resampled once per rate."""
        if rate == self.rate:
            return self.pcm
        cached = self._by_rate.get(rate)
        if cached is None:
            # No call waits on this: the best quality is free.
            cached = resample(self.pcm, self.rate, rate, SOXR_DEFAULT_QUALITY)
            self._by_rate[rate] = cached
        return cached


def builtin_music(rate: int = 16000) -> HoldMusic:
    """The built-in loop at ``rate``: the chords cross-fade into one another (no dip that
    sounds like a dropped line), round the loop's end too; every partial completes whole
    cycles over the loop, so it joins without a click."""
    total = rate * _CHORD_MS * len(_CHORDS_HZ) // 1000
    loop_s = total / rate
    t = np.arange(total) / rate
    segment = total // len(_CHORDS_HZ)
    fade = rate * _FADE_MS // 1000
    music = np.zeros(total)
    for index, chord in enumerate(_CHORDS_HZ):
        # Distance (in samples, round the loop) from this chord's segment: 0 inside it.
        position = (np.arange(total) - index * segment) % total
        outside = np.minimum(np.maximum(position - segment, 0), np.maximum(total - position, 0))
        outside = np.where(position < segment, 0, outside)
        # Raised-cosine fades centred on the segment's edges: neighbours' weights sum to 1.
        ramp = np.clip(0.5 + (fade / 2 - outside) / fade, 0.0, 1.0)
        inside_edge = np.minimum(position, segment - position)
        ramp = np.where(position < segment, np.clip(0.5 + inside_edge / fade, 0.0, 1.0), ramp)
        weight = 0.5 - 0.5 * np.cos(np.pi * ramp)
        partials = [round(freq * loop_s) / loop_s for freq in chord]
        tone = sum(np.sin(2 * np.pi * freq * t) for freq in partials) / len(partials)
        music += weight * tone
    rms = float(np.sqrt(np.mean(music**2)))
    # Scaled to the level as a sine's would be (dBFS relative to a full-scale sine).
    target = FULL_SCALE * 10 ** (_LEVEL_DBFS / 20) / np.sqrt(2)
    pcm = np.round(music * (target / rms)).astype(np.int16)
    return HoldMusic(to_bytes(pcm), rate, BUILTIN)


@functools.cache
def load_music(path: str) -> HoldMusic:
    """The music on hold of ``path`` ("" = the built-in loop), read once per process."""
    if not path:
        return builtin_music()
    try:
        pcm, rate = read_mono_pcm16(Path(path), MAX_MUSIC_S)
    except WavFileError as exc:
        raise MusicError(str(exc)) from None
    return HoldMusic(pcm, rate, path)


class MusicLoop:
    """The music played round and round, handed out in pieces."""

    def __init__(self, pcm: bytes) -> None:
        if not pcm or len(pcm) % 2:
            raise ValueError("music needs whole PCM16 samples")
        self._pcm = pcm
        self._at = 0

    def take(self, nbytes: int) -> bytes:
        """The next ``nbytes`` (even) of the loop, wrapping round at its end."""
        out = bytearray()
        while len(out) < nbytes:
            piece = self._pcm[self._at : self._at + nbytes - len(out)]
            out += piece
            self._at = (self._at + len(piece)) % len(self._pcm)
        return bytes(out)
