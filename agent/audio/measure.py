"""Signal measurements of the resampling chain, shared by ``bench/resampler.py`` and tests.

Each runs a fresh ``StreamResampler`` on a synthetic signal fed in 20 ms frames, exactly as a
call would, then flushes so the held-back tail is included. Transients at both ends are cut
before measuring so the figures describe the steady state.
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from agent.audio.levels import rms_dbfs, snr_db, tone
from agent.audio.pcm import MODEL_RATE, SIP_RATE, as_int16, to_bytes
from agent.audio.resample import StreamResampler

ALIAS_TEST_HZ: Final = (4500, 5000, 6000, 8000, 10000, 11000)
"""Tones above the 4 kHz telephony Nyquist limit that must not survive 24k->8k."""

TEST_LEVEL_DBFS: Final = -6.0
_EDGE_MS: Final = 60  # cut from both ends: filter start-up and end-of-stream transients


def stream_through(resampler: StreamResampler, pcm: bytes, frame_ms: int = 20) -> bytes:
    """Feed ``pcm`` in ``frame_ms`` frames, then flush; the whole resampled signal."""
    step = resampler.in_rate * frame_ms // 1000 * 2
    out = [resampler.process(pcm[i : i + step]) for i in range(0, len(pcm), step)]
    out.append(resampler.flush())
    return b"".join(out)


def _trim(pcm: bytes, rate: int) -> bytes:
    edge = rate * _EDGE_MS // 1000 * 2
    return pcm[edge : len(pcm) - edge]


def find_lag(reference: bytes, signal: bytes, max_lag: int) -> int:
    """Lag (samples) at which ``signal`` best matches ``reference``, by cross-correlation."""
    ref = as_int16(reference, "reference").astype(np.float64)
    sig = as_int16(signal, "signal").astype(np.float64)
    n = min(ref.size, sig.size) - 2 * max_lag
    if n <= 0:
        raise ValueError("signals too short for the requested lag range")
    core = ref[max_lag : max_lag + n]
    scores = [
        float(np.dot(core, sig[max_lag + lag : max_lag + lag + n]))
        for lag in range(-max_lag, max_lag + 1)
    ]
    return int(np.argmax(scores)) - max_lag


def gain_db(quality: str, in_rate: int, out_rate: int, freq: float) -> float:
    """Level change of a ``freq`` tone through one resampler (0 = flat passband)."""
    out = stream_through(
        StreamResampler(in_rate, out_rate, quality), tone(freq, 1000, in_rate, TEST_LEVEL_DBFS)
    )
    return rms_dbfs(_trim(out, out_rate)) - TEST_LEVEL_DBFS


def alias_rejection_db(quality: str, freq: float) -> float:
    """How far below its input level a ``freq`` tone comes out of 24k->8k (dB)."""
    pcm = tone(freq, 1000, MODEL_RATE, TEST_LEVEL_DBFS)
    out = stream_through(StreamResampler(MODEL_RATE, SIP_RATE, quality), pcm)
    return TEST_LEVEL_DBFS - rms_dbfs(_trim(out, SIP_RATE))


def worst_alias_rejection_db(quality: str, freqs: tuple[int, ...] = ALIAS_TEST_HZ) -> float:
    """Smallest alias rejection over ``freqs``: the figure a quality must clear."""
    return min(alias_rejection_db(quality, f) for f in freqs)


def _fit_tone(samples: np.ndarray, freq: float, rate: int) -> np.ndarray:
    # Least-squares sine+cosine at freq: whatever it cannot explain is image or noise.
    t = np.arange(samples.size) / rate
    basis = np.stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t)], axis=1)
    coef, *_ = np.linalg.lstsq(basis, samples, rcond=None)
    fitted: np.ndarray = basis @ coef
    return fitted


def image_rejection_db(quality: str, freq: float = 3000) -> float:
    """8k->24k: level of the wanted ``freq`` tone over everything else (images, noise), dB."""
    out = stream_through(
        StreamResampler(SIP_RATE, MODEL_RATE, quality), tone(freq, 1000, SIP_RATE, TEST_LEVEL_DBFS)
    )
    y = as_int16(_trim(out, MODEL_RATE)).astype(np.float64)
    wanted = _fit_tone(y, freq, MODEL_RATE)
    residual = y - wanted
    return 10 * math.log10(float(np.sum(wanted**2)) / max(float(np.sum(residual**2)), 1e-12))


def telephone_band_noise(ms: float, dbfs: float = -20.0, seed: int = 0) -> bytes:
    """Reproducible 300-3400 Hz noise at 8 kHz: a stand-in for speech's spectrum on a phone."""
    n = round(SIP_RATE * ms / 1000)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / SIP_RATE)
    spectrum[(freqs < 300) | (freqs > 3400)] = 0
    x = np.fft.irfft(spectrum, n)
    x *= 10 ** (dbfs / 20) * 32767 / np.sqrt(2 * np.mean(x**2))  # AES17 RMS level
    return to_bytes(np.round(x).astype(np.int16))


def roundtrip(quality: str, pcm: bytes) -> bytes:
    """8 kHz PCM16 through 8k->24k then 24k->8k, in 20 ms frames with flushes."""
    up = stream_through(StreamResampler(SIP_RATE, MODEL_RATE, quality), pcm)
    return stream_through(StreamResampler(MODEL_RATE, SIP_RATE, quality), up)


def roundtrip_snr_db(quality: str, pcm: bytes | None = None, max_lag: int | None = None) -> float:
    """SNR of 8 kHz audio after the 8k->24k->8k round trip, aligned by cross-correlation.

    Defaults to a 1 kHz tone; ``inf`` means the round trip was bit-exact. ``max_lag`` bounds
    the alignment search; for the default tone it stays under half a period (4 samples) so
    the periodic correlation cannot pick a neighbouring cycle.
    """
    if pcm is None:
        pcm = tone(1000, 1000, SIP_RATE, TEST_LEVEL_DBFS)
        max_lag = 3
    back = roundtrip(quality, pcm)
    lag = find_lag(pcm, back, 20 if max_lag is None else max_lag)
    x = as_int16(pcm)
    y = as_int16(back)
    edge = SIP_RATE * _EDGE_MS // 1000
    ref = x[edge : x.size - edge]
    got = y[edge + lag : edge + lag + ref.size]
    return snr_db(to_bytes(ref), to_bytes(got))
