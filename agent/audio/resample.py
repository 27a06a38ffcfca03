"""Streaming int16 mono resamplers over ``soxr.ResampleStream``, one per call and direction.

soxr keeps its filter state between chunks, so 20 ms frames join without clicks and the
output is sample-aligned with the input (cross-correlation lag 0: soxr trims its own filter
delay). The price is latency: soxr works in internal blocks and holds input back until a
block is full, so output arrives in bursts some milliseconds after the input that caused it.
That held-back audio is the delay this stage adds; ``StreamResampler.delay_ms`` reports it.

Quality choice, measured with ``bench/resampler.py`` (20 ms frames, python-soxr 1.1.0;
held back = worse of the two directions; alias = 24k->8k, worst of 4.5-11 kHz tones at
-6 dBFS, 114 dB meaning the alias rounds to int16 silence; image = 8k->24k, 1 and 3 kHz):

======= =============== ========= ========= ============= =====================
quality held back ms    alias rej image rej 3.4 kHz gain  band round-trip SNR
        mean / max      dB        dB        dB, per dir.  300-3400 Hz noise, dB
======= =============== ========= ========= ============= =====================
QQ      0.2 / 0.2       0         11.3      -3.0 (up)     bit-exact (no filter)
LQ      22.5 / 40.0     114       90.4      -7.8          15.4
MQ      42.7 / 75.3     114       95.1      0.0           109.1
HQ      42.8 / 73.2     114       95.1      0.0           109.1
VHQ     85.2 / 152.5    114       95.1      0.0           106.1
======= =============== ========= ========= ============= =====================

Rule: the least delay that still rejects aliases by at least 60 dB, hence ``LQ``. QQ is
cubic interpolation without an anti-alias filter: a 6 kHz tone passes 24k->8k at 0 dB (the
model's sibilants would fold back as audible whistles), and its 8k->24k images sit only
11 dB down. LQ's cost is a wider transition band: flat to 3 kHz (-0.3 dB) but -7.8 dB at
3.4 kHz per direction, which softens the top of the 300-3400 Hz telephone band (hence the
low band SNR, dominated by the missing 3.0-3.4 kHz slice; a 1 kHz tone round-trips
bit-exactly). MQ is flat to 3.6 kHz for about +20 ms per direction: pass ``quality="MQ"``
where fidelity matters more than latency.

For model->caller audio the delay mostly matters for the first chunk of a response (deltas
arrive faster than real time); call ``flush()`` when a response's audio ends so its last
~40 ms is not stranded until the next response, and ``reset()`` on barge-in.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import numpy as np
import soxr

from agent.audio.pcm import MODEL_RATE, SIP_RATE, as_int16, to_bytes

QUALITIES: Final = ("QQ", "LQ", "MQ", "HQ", "VHQ")
DEFAULT_QUALITY: Final = "LQ"
SOXR_DEFAULT_QUALITY: Final = "HQ"
"""soxr's own default: flat to 3.4 kHz at twice LQ's hold-back. For audio no call waits on
(the local backend's replies and its speech models' input), where fidelity is free."""

# A single process() call longer than this is a bug or hostile input, not a media frame;
# refusing it keeps one call from stalling the loop on a multi-minute resample.
MAX_CHUNK_SECONDS: Final = 60

_EMPTY = np.zeros(0, dtype=np.float32)


def _new_stream(in_rate: int, out_rate: int, quality: str) -> soxr.ResampleStream:
    # float32, not int16: soxr's int16 output adds TPDF dither seeded from the clock, which
    # makes the same input resample differently on every run (and dither is wasted before
    # G.711 or a speech model). Processing in float and rounding here keeps the core
    # deterministic. Samples stay in int16 units; soxr's filters are linear, so scale is moot.
    return soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)


def _to_pcm16(samples: np.ndarray) -> bytes:
    # Filter overshoot on near-full-scale input can exceed int16: saturate, never wrap. In
    # place and by the ufuncs, not np.clip's Python wrapper and two temporaries: this runs
    # for every call's every frame (measured: 7 % of a 20 ms frame's resampling).
    np.rint(samples, out=samples)
    np.maximum(samples, -32768, out=samples)
    np.minimum(samples, 32767, out=samples)
    return to_bytes(samples.astype(np.int16))


@dataclass(frozen=True, slots=True)
class Holdback:
    """Output audio a stream holds back after each input frame, in ms of signal."""

    mean_ms: float
    max_ms: float
    frame_ms: int


@dataclass(frozen=True, slots=True)
class QualityFigures:
    """Measured figures of one soxr quality for the 8k<->24k pair (see module docstring)."""

    delay_mean_ms: float
    delay_max_ms: float
    alias_rejection_db: float  # 24k->8k, int16 output; 114 = rounds to silence
    image_rejection_db: float  # 8k->24k
    gain_3400hz_db: float  # worse direction


# Recorded from bench/resampler.py; tests re-measure and fail if soxr's behaviour drifts.
QUALITY_FIGURES: Final[dict[str, QualityFigures]] = {
    "QQ": QualityFigures(0.2, 0.2, 0.0, 11.3, -3.0),
    "LQ": QualityFigures(22.5, 40.0, 114.0, 90.4, -7.8),
    "MQ": QualityFigures(42.7, 75.3, 114.0, 95.1, 0.0),
    "HQ": QualityFigures(42.8, 73.2, 114.0, 95.1, 0.0),
    "VHQ": QualityFigures(85.2, 152.5, 114.0, 95.1, 0.0),
}


def _normalise_quality(quality: str) -> str:
    q = quality.upper() if isinstance(quality, str) else quality
    if q not in QUALITIES:
        raise ValueError(f"unknown soxr quality {quality!r}; expected one of {QUALITIES}")
    return q


@functools.lru_cache(maxsize=64)
def measure_holdback(
    in_rate: int, out_rate: int, quality: str, frame_ms: int = 20, seconds: float = 5.0
) -> Holdback:
    """Measure how much output a fresh stream holds back when fed ``frame_ms`` frames.

    After each frame, held back = (input so far x ratio) - output so far. By Little's law its
    time average is the mean extra latency of a sample, so this is the figure to add to a
    latency budget. soxr's output count does not depend on the signal, so silence suffices;
    the result is deterministic and cached per configuration (a few ms of CPU, once).
    """
    quality = _normalise_quality(quality)
    stream = _new_stream(in_rate, out_rate, quality)
    frame = np.zeros(in_rate * frame_ms // 1000, dtype=np.float32)
    frames = max(1, round(seconds * 1000 / frame_ms))
    warmup = min(10, frames - 1)  # the start-up fill happens once per call, not per sample
    fed = emitted = 0
    held: list[float] = []
    for _ in range(frames):
        emitted += len(stream.resample_chunk(frame))
        fed += len(frame)
        held.append((fed * out_rate / in_rate - emitted) * 1000 / out_rate)
    return Holdback(
        mean_ms=float(np.mean(held[warmup:])), max_ms=float(np.max(held)), frame_ms=frame_ms
    )


class StreamResampler:
    """Stateful int16 mono resampler for one direction of one call (not thread-safe)."""

    def __init__(self, in_rate: int, out_rate: int, quality: str = DEFAULT_QUALITY) -> None:
        if not (isinstance(in_rate, int) and isinstance(out_rate, int)):
            raise TypeError("sample rates must be integers (Hz)")
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate}")
        self.in_rate: Final = in_rate
        self.out_rate: Final = out_rate
        self.quality: Final = _normalise_quality(quality)
        self._stream = _new_stream(in_rate, out_rate, self.quality)
        self._max_chunk = in_rate * MAX_CHUNK_SECONDS
        self._fed = 0
        self._emitted = 0

    def __repr__(self) -> str:
        return f"StreamResampler({self.in_rate}->{self.out_rate}, {self.quality})"

    def process(self, pcm: bytes) -> bytes:
        """Resample a chunk of PCM16 LE; may return less (or more) than its share."""
        samples = as_int16(pcm, f"{self.in_rate} Hz input")
        if len(samples) > self._max_chunk:
            raise ValueError(
                f"chunk of {len(samples)} samples exceeds {MAX_CHUNK_SECONDS} s at "
                f"{self.in_rate} Hz; feed audio in frames"
            )
        if len(samples) == 0:
            return b""
        out = self._stream.resample_chunk(samples.astype(np.float32))
        self._fed += len(samples)
        self._emitted += len(out)
        return _to_pcm16(out)

    def flush(self) -> bytes:
        """End the stream: return the held-back tail and make the stream ready for reuse."""
        tail = self._stream.resample_chunk(_EMPTY, last=True)
        self._restart()
        return _to_pcm16(tail)

    def reset(self) -> None:
        """Discard held-back audio (barge-in) and start afresh."""
        self._restart()

    def _restart(self) -> None:
        # soxr refuses input after last=True until cleared; clear() is cheaper than rebuilding.
        self._stream.clear()
        self._fed = 0
        self._emitted = 0

    @property
    def delay_ms(self) -> float:
        """Mean latency this stream adds with 20 ms frames (measured, see measure_holdback)."""
        return measure_holdback(self.in_rate, self.out_rate, self.quality).mean_ms

    @property
    def max_delay_ms(self) -> float:
        """Worst-case held-back audio with 20 ms frames."""
        return measure_holdback(self.in_rate, self.out_rate, self.quality).max_ms

    @property
    def pending_ms(self) -> float:
        """Audio held back right now: input fed minus output returned, in ms."""
        return (self._fed / self.in_rate - self._emitted / self.out_rate) * 1000


def upsampler(quality: str = DEFAULT_QUALITY) -> StreamResampler:
    """Caller -> model direction: 8 kHz telephony PCM16 to 24 kHz model PCM16."""
    return StreamResampler(SIP_RATE, MODEL_RATE, quality)


def downsampler(quality: str = DEFAULT_QUALITY) -> StreamResampler:
    """Model -> caller direction: 24 kHz model PCM16 to 8 kHz telephony PCM16."""
    return StreamResampler(MODEL_RATE, SIP_RATE, quality)


def resample(pcm: bytes, in_rate: int, out_rate: int, quality: str = DEFAULT_QUALITY) -> bytes:
    """A whole PCM16 buffer resampled at once (a stream fed a second at a time, then flushed,
    so a buffer of any length is fine)."""
    stream = StreamResampler(in_rate, out_rate, quality)
    step = in_rate * 2
    pieces = [stream.process(pcm[start : start + step]) for start in range(0, len(pcm), step)]
    return b"".join([*pieces, stream.flush()])
