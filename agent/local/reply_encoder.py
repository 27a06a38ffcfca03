"""A responder's reply audio, framed as fixed-length wire chunks in the session's output codec.

Responders produce PCM16 at 24 kHz in pieces of any size; the wire wants ``chunk_ms`` chunks
in the session's codec (``agent.audio.codecs``). G.711 sessions are resampled to 8 kHz
through ``agent.audio.resample.StreamResampler``: streamed, so piece boundaries do not click,
and in float, so the same reply always encodes to the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from agent.audio.codecs import Codec
from agent.audio.resample import SOXR_DEFAULT_QUALITY, StreamResampler
from agent.local.replies import RATE as REPLY_RATE

_SLICE_BYTES = REPLY_RATE * 2
"""Pieces are resampled a second at a time, so a piece of any length is fine."""


class ReplyEncoder:
    """Re-frames PCM16 24 kHz audio, pushed in pieces of any size, as ``chunk_ms`` wire chunks
    in ``codec``.

    Push-style, for replies produced by a worker thread: ``feed`` returns the whole chunks
    ready so far and ``flush`` the rest (the last chunk may be shorter).
    """

    def __init__(self, codec: Codec, chunk_ms: int) -> None:
        self._codec = codec
        self._chunk_bytes = codec.rate * chunk_ms // 1000 * 2
        self._resampler = (
            None
            if codec.rate == REPLY_RATE
            else StreamResampler(REPLY_RATE, codec.rate, SOXR_DEFAULT_QUALITY)
        )
        self._pending = bytearray()
        """PCM16 at the codec's rate, short of a whole chunk."""

    def feed(self, pcm24k: bytes) -> list[bytes]:
        whole = pcm24k[: len(pcm24k) // 2 * 2]
        if self._resampler is None:
            self._pending += whole
        else:
            for start in range(0, len(whole), _SLICE_BYTES):
                self._pending += self._resampler.process(whole[start : start + _SLICE_BYTES])
        return self._chunks(len(self._pending) // self._chunk_bytes * self._chunk_bytes)

    def flush(self) -> list[bytes]:
        if self._resampler is not None:
            self._pending += self._resampler.flush()
        return self._chunks(len(self._pending))

    def _chunks(self, end: int) -> list[bytes]:
        """Encode ``self._pending[:end]`` in chunks and drop it from the pending audio."""
        step = self._chunk_bytes
        chunks = [
            self._codec.encode(bytes(self._pending[start : min(start + step, end)]))
            for start in range(0, end, step)
        ]
        del self._pending[:end]
        return chunks


def encode_reply(pcm24k: Iterable[bytes], codec: Codec, chunk_ms: int) -> Iterator[bytes]:
    """``ReplyEncoder`` over an iterable, pulled lazily (responses are produced lazily)."""
    encoder = ReplyEncoder(codec, chunk_ms)
    for block in pcm24k:
        yield from encoder.feed(block)
    yield from encoder.flush()
