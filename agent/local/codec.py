"""Session audio formats on the wire ("pcm16", "pcmu", "pcma") to and from PCM16.

Codec names are the ones ``agent.realtime.dialect.codec_of_format`` returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import soxr

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from agent.local.responder import RATE as REPLY_RATE

CODECS = ("pcm16", "pcmu", "pcma")


def sample_rate(codec: str) -> int:
    """The sample rate a codec implies: 24 kHz for pcm16, 8 kHz for G.711."""
    return 24000 if codec == "pcm16" else 8000


def bytes_per_sample(codec: str) -> int:
    return 2 if codec == "pcm16" else 1


def decode(codec: str, data: bytes) -> np.ndarray:
    """Wire bytes to PCM16 samples at ``sample_rate(codec)``.

    Raises ValueError for pcm16 data that is not whole samples.
    """
    if codec == "pcmu":
        data = ulaw_decode(data)
    elif codec == "pcma":
        data = alaw_decode(data)
    elif len(data) % 2:
        raise ValueError(f"pcm16 audio must be whole 2-byte samples, got {len(data)} bytes")
    return np.frombuffer(data, dtype="<i2").astype(np.int16)


def encode_reply(pcm24k: Iterable[bytes], codec: str, chunk_ms: int) -> Iterator[bytes]:
    """Re-frame a responder's PCM16 24 kHz chunks as ``chunk_ms`` wire chunks in ``codec``.

    The last chunk may be shorter. Resampling for G.711 is streamed so chunk boundaries do
    not click, and is only done as chunks are pulled (responses are produced lazily).
    """
    rate = sample_rate(codec)
    chunk_samples = rate * chunk_ms // 1000
    resampler = None if rate == REPLY_RATE else soxr.ResampleStream(REPLY_RATE, rate, 1, "int16")
    pending = np.zeros(0, dtype=np.int16)
    for block in pcm24k:
        samples = np.frombuffer(block[: len(block) // 2 * 2], dtype="<i2").astype(np.int16)
        if resampler is not None:
            samples = resampler.resample_chunk(samples)
        pending = np.concatenate([pending, samples])
        while len(pending) >= chunk_samples:
            yield _encode(codec, pending[:chunk_samples])
            pending = pending[chunk_samples:]
    if resampler is not None:
        pending = np.concatenate([pending, resampler.resample_chunk(np.zeros(0, np.int16), True)])
    for start in range(0, len(pending), chunk_samples):
        yield _encode(codec, pending[start : start + chunk_samples])


def _encode(codec: str, samples: np.ndarray) -> bytes:
    pcm = samples.astype("<i2").tobytes()
    if codec == "pcmu":
        return ulaw_encode(pcm)
    if codec == "pcma":
        return alaw_encode(pcm)
    return pcm
