"""Wire audio formats of the local server: decoding appended audio, framing reply audio."""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio.g711 import alaw_decode, ulaw_decode
from agent.local import codec
from tests.local_helpers import level_dbfs, tone


def test_rates_and_sample_sizes() -> None:
    assert [codec.sample_rate(c) for c in codec.CODECS] == [24000, 8000, 8000]
    assert [codec.bytes_per_sample(c) for c in codec.CODECS] == [2, 1, 1]


def test_decode_pcm16_and_reject_half_samples() -> None:
    samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    assert np.array_equal(codec.decode("pcm16", samples.astype("<i2").tobytes()), samples)
    with pytest.raises(ValueError, match="whole 2-byte samples"):
        codec.decode("pcm16", b"\x00\x01\x02")


@pytest.mark.parametrize(("name", "decoder"), [("pcmu", ulaw_decode), ("pcma", alaw_decode)])
def test_decode_g711(name: str, decoder: object) -> None:
    wire = bytes(range(256))
    expected = np.frombuffer(decoder(wire), dtype="<i2")  # type: ignore[operator]
    assert np.array_equal(codec.decode(name, wire), expected)


def _reply(ms: int, block: int) -> list[bytes]:
    samples = tone(ms, dbfs=-16)
    return [samples[i : i + block].astype("<i2").tobytes() for i in range(0, len(samples), block)]


@pytest.mark.parametrize("name", codec.CODECS)
@pytest.mark.parametrize("block", [7, 1000, 48000])
def test_encode_reply_frames_any_input_into_fixed_chunks(name: str, block: int) -> None:
    chunks = list(codec.encode_reply(_reply(1030, block), name, 50))
    rate = codec.sample_rate(name)
    size = rate * 50 // 1000 * codec.bytes_per_sample(name)
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert 0 < len(chunks[-1]) <= size
    total = sum(len(chunk) for chunk in chunks) // codec.bytes_per_sample(name)
    # Resampling to 8 kHz keeps the duration (the stream is flushed at the end).
    assert total == pytest.approx(rate * 1.03, abs=2)
    pcm = np.concatenate([codec.decode(name, chunk) for chunk in chunks])
    assert level_dbfs(pcm[rate // 10 : -rate // 10]) == pytest.approx(-16, abs=0.5)


def test_encode_reply_is_lazy() -> None:
    pulled: list[int] = []

    def source() -> object:
        for index in range(100):
            pulled.append(index)
            yield tone(100).astype("<i2").tobytes()

    stream = codec.encode_reply(source(), "pcm16", 50)  # type: ignore[arg-type]
    next(stream)
    assert len(pulled) == 1
