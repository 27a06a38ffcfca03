"""Signal levels for PCM16: RMS in dBFS, silence detection, test tones, SNR.

dBFS follows AES17: a full-scale sine reads 0 dBFS (RMS referred to the RMS of a full-scale
sine), so ``rms_dbfs(tone(..., dbfs=x))`` reads back ``x``. Silence is floored at
``SILENCE_DBFS`` rather than -inf so levels stay finite in JSON, logs and comparisons.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from agent.audio.pcm import as_int16, to_bytes

FULL_SCALE: Final = 32767
SILENCE_DBFS: Final = -120.0
_FULL_SCALE_SINE_POWER: Final = FULL_SCALE * FULL_SCALE / 2


def _power_db(power: float) -> float:
    if power <= 0.0:
        return SILENCE_DBFS
    return max(SILENCE_DBFS, 10.0 * math.log10(power / _FULL_SCALE_SINE_POWER))


def rms_dbfs(pcm: bytes) -> float:
    """RMS level of PCM16 LE audio in dBFS (AES17); ``SILENCE_DBFS`` for silence or empty."""
    samples = as_int16(pcm)
    if samples.size == 0:
        return SILENCE_DBFS
    x = samples.astype(np.float64)
    return _power_db(float(np.dot(x, x)) / x.size)


def is_silent(pcm: bytes, threshold_dbfs: float = -50.0) -> bool:
    """True when the RMS level is below ``threshold_dbfs``."""
    return rms_dbfs(pcm) < threshold_dbfs


def tone(freq: float, ms: float, rate: int = 8000, dbfs: float = -6.0, phase: float = 0.0) -> bytes:
    """A sine of ``freq`` Hz lasting ``ms`` ms at ``rate`` Hz, RMS ``dbfs`` (AES17), as PCM16 LE.

    Rounded to int16 (no dither); ``dbfs`` above 0 would clip and is refused.
    """
    if dbfs > 0.0:
        raise ValueError(f"tone level {dbfs} dBFS would clip; use <= 0")
    if rate <= 0 or ms < 0:
        raise ValueError(f"need rate > 0 and ms >= 0, got rate={rate}, ms={ms}")
    n = round(rate * ms / 1000)
    amplitude = FULL_SCALE * 10.0 ** (dbfs / 20.0)
    t = np.arange(n, dtype=np.float64) / rate
    return to_bytes(np.round(amplitude * np.sin(2 * np.pi * freq * t + phase)).astype(np.int16))


def snr_db(reference: bytes, signal: bytes) -> float:
    """Signal-to-noise ratio of ``signal`` against an equally long, aligned ``reference``."""
    ref = as_int16(reference, "reference").astype(np.float64)
    sig = as_int16(signal, "signal").astype(np.float64)
    if ref.size != sig.size or ref.size == 0:
        raise ValueError(f"need equal, non-empty lengths, got {ref.size} and {sig.size}")
    noise = float(np.sum((sig - ref) ** 2))
    power = float(np.sum(ref**2))
    if noise == 0.0:
        return math.inf
    if power == 0.0:
        return -math.inf
    return 10.0 * math.log10(power / noise)
