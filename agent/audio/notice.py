"""The recording notice: a WAV file the caller hears on answer, before the agent greets.

Read once when the profile is loaded (a file that is missing or not PCM16 stops the start),
and resampled to each call's rate when the call's codec is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from agent.audio.resample import resample
from agent.audio.wav_file import WavFileError, read_mono_pcm16

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
        pcm, rate = read_mono_pcm16(path, MAX_NOTICE_S)
    except WavFileError as exc:
        raise NoticeError(str(exc)) from None
    return Notice(pcm, rate)
