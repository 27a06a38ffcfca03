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


class ReplyEncoder:
    """Re-frames a responder's PCM16 24 kHz audio, pushed in pieces of any size, as
    ``chunk_ms`` wire chunks in ``codec``.

    Resampling for G.711 is streamed, so piece boundaries do not click. Push-style, for
    replies produced by a worker thread: ``feed`` returns the whole chunks ready so far and
    ``flush`` the rest (the last chunk may be shorter).
    """

    def __init__(self, codec: str, chunk_ms: int) -> None:
        self._codec = codec
        rate = sample_rate(codec)
        self._chunk_samples = rate * chunk_ms // 1000
        self._resampler = (
            None if rate == REPLY_RATE else soxr.ResampleStream(REPLY_RATE, rate, 1, "int16")
        )
        self._pending = np.zeros(0, dtype=np.int16)

    def feed(self, pcm24k: bytes) -> list[bytes]:
        samples = np.frombuffer(pcm24k[: len(pcm24k) // 2 * 2], dtype="<i2").astype(np.int16)
        if self._resampler is not None:
            samples = self._resampler.resample_chunk(samples)
        self._pending = np.concatenate([self._pending, samples])
        whole = len(self._pending) // self._chunk_samples * self._chunk_samples
        out = [
            _encode(self._codec, self._pending[start : start + self._chunk_samples])
            for start in range(0, whole, self._chunk_samples)
        ]
        self._pending = self._pending[whole:]
        return out

    def flush(self) -> list[bytes]:
        pending = self._pending
        if self._resampler is not None:
            tail = self._resampler.resample_chunk(np.zeros(0, np.int16), True)
            pending = np.concatenate([pending, tail])
        self._pending = np.zeros(0, dtype=np.int16)
        step = self._chunk_samples
        return [_encode(self._codec, pending[i : i + step]) for i in range(0, len(pending), step)]


def encode_reply(pcm24k: Iterable[bytes], codec: str, chunk_ms: int) -> Iterator[bytes]:
    """``ReplyEncoder`` over an iterable, pulled lazily (responses are produced lazily)."""
    encoder = ReplyEncoder(codec, chunk_ms)
    for block in pcm24k:
        yield from encoder.feed(block)
    yield from encoder.flush()


def _encode(codec: str, samples: np.ndarray) -> bytes:
    pcm = samples.astype("<i2").tobytes()
    if codec == "pcmu":
        return ulaw_encode(pcm)
    if codec == "pcma":
        return alaw_encode(pcm)
    return pcm
