"""The session audio codecs by name: one registry for the call side and the local server.

A realtime session carries audio as ``pcm16`` (24 kHz PCM16) or as G.711 (``pcmu``/``pcma``,
8 kHz, one byte per sample); a GPT-Live session may also take ``pcm16-16k`` (16 kHz PCM16, the
rate of wideband G.722 calls). The names are the ones the protocol adapters and the local
server use. Each codec says its rate and width and converts to and from PCM16 LE at that rate; the
constants live with the codec, not with its users.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from agent.audio.pcm import MODEL_RATE, SIP_RATE, check_pcm16


def _pcm16_identity(data: bytes) -> bytes:
    check_pcm16(data, "pcm16 audio")
    return bytes(data)


@dataclass(frozen=True)
class Codec:
    """One session audio format: its name, rate, bytes per sample and PCM16 conversions."""

    name: str
    rate: int
    sample_bytes: int
    #: PCM16 LE at ``rate`` -> wire bytes.
    encode: Callable[[bytes], bytes]
    #: Wire bytes -> PCM16 LE at ``rate`` (ValueError for pcm16 that is not whole samples).
    decode: Callable[[bytes], bytes]

    @property
    def is_g711(self) -> bool:
        return self.sample_bytes == 1


PCM16: Final = Codec("pcm16", MODEL_RATE, 2, _pcm16_identity, _pcm16_identity)
#: GPT-Live's other PCM rate (``audio/pcm`` at 16 kHz); the Realtime API takes 24 kHz only.
PCM16_16K: Final = Codec("pcm16-16k", 16000, 2, _pcm16_identity, _pcm16_identity)
#: A WebRTC session's audio as the agent handles it: PCM16 at Opus's 48 kHz clock on the media
#: track (aiortc encodes and decodes the Opus itself); never a format of a session's JSON.
TRACK_PCM16: Final = Codec("opus", 48000, 2, _pcm16_identity, _pcm16_identity)
PCMU: Final = Codec("pcmu", SIP_RATE, 1, ulaw_encode, ulaw_decode)
PCMA: Final = Codec("pcma", SIP_RATE, 1, alaw_encode, alaw_decode)

#: Every session codec by name.
CODECS: Final[dict[str, Codec]] = {c.name: c for c in (PCM16, PCM16_16K, PCMU, PCMA)}
#: SIP codec names (SDP rtpmap) of the G.711 codecs a call can pass straight through.
G711_BY_SIP_NAME: Final[dict[str, Codec]] = {"PCMU": PCMU, "PCMA": PCMA}


def codec(name: str) -> Codec:
    """The codec called ``name`` ("pcm16", "pcm16-16k", "pcmu", "pcma"); KeyError names the
    known ones."""
    try:
        return CODECS[name]
    except KeyError:
        raise KeyError(f"unknown session codec {name!r} (known: {', '.join(CODECS)})") from None
