"""G.711: bit-exact against CPython's audioop for every PCM value and every code."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from agent.audio.g711 import alaw_decode, alaw_encode, ulaw_decode, ulaw_encode

ALL_PCM = np.arange(-32768, 32768, dtype="<i2").tobytes()
ALL_CODES = bytes(range(256))
CODECS = {"ulaw": (ulaw_encode, ulaw_decode), "alaw": (alaw_encode, alaw_decode)}


@pytest.fixture(scope="module")
def audioop():  # type: ignore[no-untyped-def]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return pytest.importorskip("audioop")  # removed in Python 3.13


@pytest.mark.parametrize("law", CODECS)
def test_encode_matches_audioop_for_all_65536_values(law: str, audioop) -> None:  # type: ignore[no-untyped-def]
    encode, _ = CODECS[law]
    reference = getattr(audioop, f"lin2{law}")(ALL_PCM, 2)
    ours = encode(ALL_PCM)
    assert len(ours) == 65536
    mismatches = np.flatnonzero(np.frombuffer(ours, np.uint8) != np.frombuffer(reference, np.uint8))
    assert mismatches.size == 0, f"first mismatching PCM values: {mismatches[:5] - 32768}"


@pytest.mark.parametrize("law", CODECS)
def test_decode_matches_audioop_for_all_256_codes(law: str, audioop) -> None:  # type: ignore[no-untyped-def]
    _, decode = CODECS[law]
    assert decode(ALL_CODES) == getattr(audioop, f"{law}2lin")(ALL_CODES, 2)


# Anchor values from the G.711 tables themselves, so the codec is checked without audioop too.
@pytest.mark.parametrize(
    "law,code,value",
    [
        ("ulaw", 0xFF, 0),
        ("ulaw", 0x7F, 0),
        ("ulaw", 0x80, 32124),
        ("ulaw", 0x00, -32124),
        ("ulaw", 0xFE, 8),  # smallest positive step: segment 0, mantissa 1 once inverted
        ("ulaw", 0xEF, 132),  # first code of segment 1
        ("alaw", 0xD5, 8),
        ("alaw", 0x55, -8),
        ("alaw", 0xAA, 32256),
        ("alaw", 0x2A, -32256),
    ],
)
def test_known_code_values(law: str, code: int, value: int) -> None:
    _, decode = CODECS[law]
    assert np.frombuffer(decode(bytes([code])), "<i2")[0] == value


@pytest.mark.parametrize("law", CODECS)
def test_decoded_values_encode_back_to_their_code(law: str) -> None:
    encode, decode = CODECS[law]
    decoded = decode(ALL_CODES)
    recoded = encode(decoded)
    if law == "ulaw":
        # mu-law has two zeros (0xFF, 0x7F); both decode to 0, which encodes as 0xFF.
        assert recoded == ALL_CODES.replace(b"\x7f", b"\xff")
    else:
        assert recoded == ALL_CODES


@pytest.mark.parametrize("law", CODECS)
def test_companding_error_is_bounded(law: str) -> None:
    # G.711 keeps roughly 5 bits of mantissa: relative error under 1/16 above segment 0.
    encode, decode = CODECS[law]
    x = np.frombuffer(ALL_PCM, "<i2").astype(np.int64)
    y = np.frombuffer(decode(encode(ALL_PCM)), "<i2").astype(np.int64)
    big = np.abs(x) > 1024
    assert np.all(np.abs(y - x)[big] <= np.abs(x)[big] / 16)
    assert np.max(np.abs(y - x)[~big]) <= 64


def test_empty_and_invalid_input() -> None:
    assert ulaw_encode(b"") == b"" and ulaw_decode(b"") == b""
    with pytest.raises(ValueError, match="odd byte count"):
        alaw_encode(b"\x00")
    with pytest.raises(TypeError, match="bytes-like"):
        ulaw_decode([1, 2, 3])  # type: ignore[arg-type]
