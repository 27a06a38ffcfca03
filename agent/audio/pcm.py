"""Validation and conversion of raw PCM16 buffers shared by the audio core.

Every audio entry point takes little-endian signed 16-bit mono PCM as a bytes-like object.
Checking it in one place keeps the error messages identical across modules and stops a
malformed frame (odd length, wrong type) from reaching soxr or the playout queue, where it
would surface as a confusing numpy error or a shifted byte stream.
"""

from __future__ import annotations

import numpy as np

# Explicit little-endian: RTP/PJSIP and the realtime API both speak LE PCM16 whatever the host.
PCM16_LE = np.dtype("<i2")

SIP_RATE = 8000
"""Sample rate of the telephony side (G.711 decoded by PJSIP)."""

MODEL_RATE = 24000
"""Sample rate of the realtime speech model's PCM16 input and output."""

FRAME_MS = 20
"""Every media frame, caller's and agent's, is 20 ms (RTP's usual ptime)."""


def frame_samples(rate: int) -> int:
    """Samples in one 20 ms frame at ``rate`` (160 at 8 kHz, 320 at 16 kHz)."""
    return rate * FRAME_MS // 1000


def frame_bytes(rate: int) -> int:
    """Bytes of one 20 ms PCM16 frame at ``rate``."""
    return frame_samples(rate) * 2


BytesLike = bytes | bytearray | memoryview


def check_pcm16(pcm: object, what: str = "pcm") -> int:
    """Validate a PCM16 buffer and return its length in samples.

    Raises TypeError for non-bytes-like input and ValueError for an odd byte count (a
    16-bit stream cut mid-sample, which would swap every later byte pair).
    """
    if not isinstance(pcm, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be bytes-like PCM16, got {type(pcm).__name__}")
    nbytes = pcm.nbytes if isinstance(pcm, memoryview) else len(pcm)
    if nbytes % 2:
        raise ValueError(f"{what} has an odd byte count ({nbytes}); PCM16 needs 2 bytes per sample")
    return nbytes // 2


def as_int16(pcm: object, what: str = "pcm") -> np.ndarray:
    """View a validated PCM16 LE buffer as a native int16 array (no copy on LE hosts)."""
    check_pcm16(pcm, what)
    samples = np.frombuffer(pcm, dtype=PCM16_LE)  # type: ignore[call-overload]
    # soxr wants the native dtype; on little-endian hosts this is a no-op view.
    return samples.astype(np.int16, copy=False)


def to_bytes(samples: np.ndarray) -> bytes:
    """Serialise int16 samples as little-endian PCM16 bytes."""
    return samples.astype(PCM16_LE, copy=False).tobytes()
