"""Conversion between the call's 8 kHz PCM16 and the realtime session's audio format.

The session either takes 24 kHz PCM16 (resampled with soxr streams, one per direction) or,
with G.711 passthrough, the call's own µ-law/A-law at 8 kHz (no resampling, no resampler
delay). CallSession talks to one interface and does not care which.
"""

from __future__ import annotations

from typing import Protocol

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from agent.audio.pcm import MODEL_RATE, SIP_RATE
from agent.audio.resample import StreamResampler


class ModelAudio(Protocol):
    """One call's two conversions; ``codec`` is the session format: pcm16, pcmu or pcma."""

    codec: str
    #: Sample rate of the session's audio, and bytes per sample of its encoding.
    rate: int
    sample_bytes: int

    def to_model(self, pcm: bytes) -> bytes:
        """8 kHz PCM16 from the call → session audio (may hold some back)."""
        ...

    def from_model(self, data: bytes) -> bytes:
        """Session audio → 8 kHz PCM16 for the call (may hold some back)."""
        ...

    def flush_from_model(self) -> bytes:
        """End of an output item: what is still held back, as 8 kHz PCM16."""
        ...

    def reset_from_model(self) -> None:
        """Barge-in: drop what is held back of the model's audio."""
        ...


class ResampledPcm16:
    """24 kHz PCM16 sessions: soxr streaming resamplers in both directions."""

    codec = "pcm16"
    rate = MODEL_RATE
    sample_bytes = 2

    def __init__(self, quality: str) -> None:
        self._up = StreamResampler(SIP_RATE, MODEL_RATE, quality)
        self._down = StreamResampler(MODEL_RATE, SIP_RATE, quality)

    def to_model(self, pcm: bytes) -> bytes:
        return self._up.process(pcm)

    def from_model(self, data: bytes) -> bytes:
        return self._down.process(data)

    def flush_from_model(self) -> bytes:
        return self._down.flush()

    def reset_from_model(self) -> None:
        self._down.reset()


class G711Passthrough:
    """G.711 sessions: the call's codec end to end, sample for sample."""

    rate = SIP_RATE
    sample_bytes = 1

    def __init__(self, codec: str) -> None:
        if codec not in ("pcmu", "pcma"):
            raise ValueError(f"G.711 passthrough needs pcmu or pcma, not {codec!r}")
        self.codec = codec
        self._encode = ulaw_encode if codec == "pcmu" else alaw_encode
        self._decode = ulaw_decode if codec == "pcmu" else alaw_decode

    def to_model(self, pcm: bytes) -> bytes:
        return self._encode(pcm)

    def from_model(self, data: bytes) -> bytes:
        return self._decode(data)

    def flush_from_model(self) -> bytes:
        return b""

    def reset_from_model(self) -> None:
        return None


def model_audio_for(sip_codec: str | None, passthrough: bool, quality: str) -> ModelAudio:
    """Passthrough when enabled and the call's codec is G.711, else resampled PCM16."""
    if passthrough and sip_codec in ("PCMU", "PCMA"):
        return G711Passthrough(sip_codec.lower())
    return ResampledPcm16(quality)
