"""The recording notice: a WAV file the caller hears on answer, before the agent greets.

Read once when the profile is loaded (a file that is missing or not PCM16 stops the start),
and resampled to each call's rate when the call's codec is known.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.audio.resample import resample

#: Longer than this is no notice but a message: refused, so a wrong file is noticed at start.
MAX_NOTICE_S = 30


class NoticeError(Exception):
    """The notice file cannot be used; ``str()`` says why in one line."""


@dataclass(frozen=True)
class Notice:
    """Mono PCM16 LE audio at ``rate``."""

    pcm: bytes
    rate: int

    def at_rate(self, rate: int) -> bytes:
        """The notice as PCM16 at ``rate`` (the call's)."""
        if rate == self.rate:
            return self.pcm
        return resample(self.pcm, self.rate, rate)


def load_notice(path: Path) -> Notice:
    """Read ``path``: a PCM16 WAV, mono or stereo (mixed down), at any rate."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise NoticeError(f"{path} does not exist") from None
    except (OSError, EOFError, wave.Error) as exc:
        raise NoticeError(f"{path} is not a readable WAV file ({exc})") from None
    if width != 2:
        raise NoticeError(f"{path} must be 16-bit PCM (it has {8 * width}-bit samples)")
    if channels not in (1, 2):
        raise NoticeError(f"{path} must be mono or stereo (it has {channels} channels)")
    samples = np.frombuffer(frames, dtype="<i2")
    if channels == 2:
        pairs = samples[: len(samples) // 2 * 2].reshape(-1, 2).astype(np.int32)
        samples = (pairs.sum(axis=1) // 2).astype("<i2")
    if not len(samples):
        raise NoticeError(f"{path} holds no audio")
    if len(samples) > MAX_NOTICE_S * rate:
        raise NoticeError(f"{path} is longer than {MAX_NOTICE_S} s")
    return Notice(samples.astype("<i2").tobytes(), rate)
