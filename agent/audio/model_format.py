"""Conversion between the call's PCM16 and the realtime session's audio format.

The session either takes 24 kHz PCM16 (resampled from and to the call's rate with soxr
streams, one per direction) or, with G.711 passthrough, the call's own µ-law/A-law at 8 kHz
(no resampling, no resampler delay). The bridge talks to one interface and does not care
which.
"""

from __future__ import annotations

from typing import Protocol

from agent.audio.codecs import G711_BY_SIP_NAME, PCM16, PCM16_16K, TRACK_PCM16, Codec
from agent.audio.pcm import SIP_RATE
from agent.audio.resample import StreamResampler


class ModelAudio(Protocol):
    """One call's two conversions; ``codec`` is the session format: pcm16, pcmu or pcma."""

    codec: str
    #: Sample rate of the session's audio, and bytes per sample of its encoding.
    rate: int
    sample_bytes: int

    def to_model(self, pcm: bytes) -> bytes:
        """PCM16 at the call's rate → session audio (may hold some back)."""
        ...

    def from_model(self, data: bytes) -> bytes:
        """Session audio → PCM16 at the call's rate (may hold some back)."""
        ...

    def flush_from_model(self) -> bytes:
        """End of an output item: what is still held back, as PCM16 at the call's rate."""
        ...

    def reset_from_model(self) -> None:
        """Barge-in: drop what is held back of the model's audio."""
        ...


class ResampledPcm16:
    """PCM16 sessions at another rate than the call's: soxr streaming resamplers in both
    directions. 24 kHz for a WebSocket session; 48 kHz for a WebRTC one (its media track)."""

    def __init__(self, quality: str, call_rate: int = SIP_RATE, session: Codec = PCM16) -> None:
        self.codec = session.name
        self.rate = session.rate
        self.sample_bytes = session.sample_bytes
        self._up = StreamResampler(call_rate, session.rate, quality)
        self._down = StreamResampler(session.rate, call_rate, quality)

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

    def __init__(self, codec: Codec) -> None:
        if not codec.is_g711:
            raise ValueError(f"G.711 passthrough needs pcmu or pcma, not {codec.name!r}")
        self.codec = codec.name
        self.rate = codec.rate
        self.sample_bytes = codec.sample_bytes
        self._codec = codec

    def to_model(self, pcm: bytes) -> bytes:
        return self._codec.encode(pcm)

    def from_model(self, data: bytes) -> bytes:
        return self._codec.decode(data)

    def flush_from_model(self) -> bytes:
        return b""

    def reset_from_model(self) -> None:
        return None


class Pcm16AtCallRate:
    """A 16 kHz session on a 16 kHz (G.722) call: PCM16 end to end, no resampling.

    GPT-Live takes PCM at 16 kHz; the Realtime API does not (24 kHz only)."""

    codec = PCM16_16K.name
    rate = PCM16_16K.rate
    sample_bytes = PCM16_16K.sample_bytes

    def to_model(self, pcm: bytes) -> bytes:
        return bytes(pcm)

    def from_model(self, data: bytes) -> bytes:
        return bytes(data)

    def flush_from_model(self) -> bytes:
        return b""

    def reset_from_model(self) -> None:
        return None


def live_audio_for(sip_codec: str | None, quality: str, call_rate: int = SIP_RATE) -> ModelAudio:
    """A GPT-Live session's format follows the call: G.711 as is, 16 kHz PCM on a 16 kHz call
    (no resampling either way); only another rate is resampled, to 24 kHz."""
    g711 = G711_BY_SIP_NAME.get(sip_codec or "")
    if g711 is not None and call_rate == g711.rate:
        return G711Passthrough(g711)
    if call_rate == PCM16_16K.rate:
        return Pcm16AtCallRate()
    return ResampledPcm16(quality, call_rate)


def model_audio_for(
    sip_codec: str | None,
    passthrough: bool,
    quality: str,
    call_rate: int = SIP_RATE,
    webrtc: bool = False,
) -> ModelAudio:
    """Passthrough when enabled and the call's codec is G.711, else resampled PCM16; over
    WebRTC always the media track's 48 kHz (the SDP, not the session, chose Opus)."""
    if webrtc:
        return ResampledPcm16(quality, call_rate, TRACK_PCM16)
    g711 = G711_BY_SIP_NAME.get(sip_codec or "")
    if passthrough and g711 is not None and call_rate == g711.rate:
        return G711Passthrough(g711)
    return ResampledPcm16(quality, call_rate)
