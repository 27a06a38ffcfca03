"""Sans-I/O audio core: resampling streams, the playout buffer, G.711 codecs and levels."""

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode
from agent.audio.levels import SILENCE_DBFS, is_silent, rms_dbfs, tone
from agent.audio.pcm import MODEL_RATE, SIP_RATE
from agent.audio.playout import Playout
from agent.audio.resample import (
    DEFAULT_QUALITY,
    QUALITY_FIGURES,
    StreamResampler,
    downsampler,
    upsampler,
)

__all__ = [
    "DEFAULT_QUALITY",
    "MODEL_RATE",
    "QUALITY_FIGURES",
    "SILENCE_DBFS",
    "SIP_RATE",
    "Playout",
    "StreamResampler",
    "alaw_decode",
    "alaw_encode",
    "downsampler",
    "is_silent",
    "rms_dbfs",
    "tone",
    "ulaw_decode",
    "ulaw_encode",
    "upsampler",
]
