"""ITU-T G.711 mu-law and A-law codecs for PCM16 LE, vectorised with numpy.

PJSIP normally does G.711 itself; these are for G.711 passthrough sessions (the realtime
API's ``audio/pcmu`` / ``audio/pcma`` formats) and for tests that need wire-exact audio.
Bit-exact with the classic segment algorithm (the one CPython's ``audioop`` implements):
mu-law quantises the top 14 bits with a bias of 33 and 8 segments, A-law the top 13 bits
with 8 segments, and both complement/alternate bits on the wire as G.711 specifies.

Both directions are table lookups: 256 entries to decode, and 65 536 to encode (one per
PCM16 value, 64 KiB per law, computed once at import from segment and mantissa). A
passthrough call encodes a frame every 20 ms, and one lookup costs a fraction of the
arithmetic's dozen array passes.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from agent.audio.pcm import PCM16_LE, as_int16

_ULAW_BIAS: Final = 33  # in 14-bit units (0x84 >> 2); puts segment edges on powers of two
_ULAW_MAX: Final = 0x1FFF  # largest biased 14-bit magnitude (segment 7, mantissa 15)


def _bit_length(values: np.ndarray) -> np.ndarray:
    # frexp's exponent is the bit length for positive integers (exact below 2**53).
    return np.frexp(values.astype(np.float64))[1].astype(np.int32)


def _check_codes(data: object) -> np.ndarray:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise TypeError(f"G.711 data must be bytes-like, got {type(data).__name__}")
    return np.frombuffer(data, dtype=np.uint8)


def _ulaw_decode_table() -> np.ndarray:
    code = ~np.arange(256, dtype=np.int32) & 0xFF  # the wire inverts every bit
    segment = (code >> 4) & 0x7
    magnitude = (((code & 0xF) << 3) + (_ULAW_BIAS << 2)) << segment
    value = magnitude - (_ULAW_BIAS << 2)
    return np.where(code & 0x80, -value, value).astype(PCM16_LE)


def _alaw_decode_table() -> np.ndarray:
    code = np.arange(256, dtype=np.int32) ^ 0x55  # the wire inverts the even bits
    segment = (code >> 4) & 0x7
    # Reconstruct at the middle of the quantisation step (+8); segments above 0 carry an
    # implicit leading one (0x100) and double their step with each segment.
    magnitude = ((code & 0xF) << 4) + 8
    magnitude = np.where(segment > 0, (magnitude + 0x100) << np.maximum(segment - 1, 0), magnitude)
    # A-law's sign bit is set for positive values.
    return np.where(code & 0x80, magnitude, -magnitude).astype(PCM16_LE)


_ULAW_TO_PCM: Final = _ulaw_decode_table()
_ALAW_TO_PCM: Final = _alaw_decode_table()


def _ulaw_codes(samples: np.ndarray) -> np.ndarray:
    x = samples.astype(np.int32) >> 2  # 14-bit, floor like the reference
    negative = x < 0
    magnitude = np.minimum(np.abs(x) + _ULAW_BIAS, _ULAW_MAX)
    segment = _bit_length(magnitude) - 6  # biased magnitudes span 2**5+1 .. 2**13-1
    mantissa = (magnitude >> (segment + 1)) & 0xF
    code = (segment << 4) | mantissa
    codes: np.ndarray = (np.where(negative, 0x7F, 0xFF) ^ code).astype(np.uint8)
    return codes


def ulaw_decode(data: bytes) -> bytes:
    """G.711 mu-law -> PCM16 LE."""
    decoded: bytes = _ULAW_TO_PCM[_check_codes(data)].tobytes()
    return decoded


def _alaw_codes(samples: np.ndarray) -> np.ndarray:
    x = samples.astype(np.int32) >> 3  # 13-bit, floor like the reference
    positive = x >= 0
    magnitude = np.where(positive, x, ~x)  # one's complement for negatives: 0..4095
    segment = np.maximum(_bit_length(magnitude) - 5, 0)
    # Segments 0 and 1 share a step size of 2 (in 13-bit units); above that it doubles.
    mantissa = (magnitude >> np.maximum(segment, 1)) & 0xF
    code = (segment << 4) | mantissa
    codes: np.ndarray = (np.where(positive, 0xD5, 0x55) ^ code).astype(np.uint8)
    return codes


def alaw_decode(data: bytes) -> bytes:
    """G.711 A-law -> PCM16 LE."""
    decoded: bytes = _ALAW_TO_PCM[_check_codes(data)].tobytes()
    return decoded


#: Every PCM16 value, indexed by its 16 bits read unsigned (how ``_encode`` looks them up).
_EVERY_SAMPLE: Final = np.arange(1 << 16, dtype=np.uint16).view(np.int16)
_PCM_TO_ULAW: Final = _ulaw_codes(_EVERY_SAMPLE)
_PCM_TO_ALAW: Final = _alaw_codes(_EVERY_SAMPLE)


def _encode(table: np.ndarray, pcm: bytes) -> bytes:
    encoded: bytes = table[as_int16(pcm).view(np.uint16)].tobytes()
    return encoded


def ulaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE -> G.711 mu-law, one byte per sample."""
    return _encode(_PCM_TO_ULAW, pcm)


def alaw_encode(pcm: bytes) -> bytes:
    """PCM16 LE -> G.711 A-law, one byte per sample."""
    return _encode(_PCM_TO_ALAW, pcm)
