"""Reading the operator's WAV files (the recording notice, music on hold): 16-bit PCM, mono or
stereo (mixed down), at any rate, checked once when the profile is loaded so a wrong file
stops the start with one clear line instead of failing a call later."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np


class WavFileError(Exception):
    """The file cannot be used; ``str()`` says why in one line."""


def read_mono_pcm16(path: Path, max_s: float) -> tuple[bytes, int]:
    """``path``'s audio as mono PCM16 LE and its rate; at most ``max_s`` seconds long."""
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise WavFileError(f"{path} does not exist") from None
    except (OSError, EOFError, wave.Error) as exc:
        raise WavFileError(f"{path} is not a readable WAV file ({exc})") from None
    if width != 2:
        raise WavFileError(f"{path} must be 16-bit PCM (it has {8 * width}-bit samples)")
    if channels not in (1, 2):
        raise WavFileError(f"{path} must be mono or stereo (it has {channels} channels)")
    samples = np.frombuffer(frames, dtype="<i2")
    if channels == 2:
        pairs = samples[: len(samples) // 2 * 2].reshape(-1, 2).astype(np.int32)
        samples = (pairs.sum(axis=1) // 2).astype("<i2")
    if not len(samples):
        raise WavFileError(f"{path} holds no audio")
    if len(samples) > max_s * rate:
        raise WavFileError(f"{path} is longer than {max_s:g} s")
    return samples.astype("<i2").tobytes(), rate
