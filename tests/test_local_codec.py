"""Wire audio formats of the local server: decoding appended audio, framing reply audio."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from agent.audio.codecs import CODECS, codec
from agent.audio.g711 import alaw_decode, ulaw_decode
from agent.audio.levels import rms_dbfs
from agent.local.protocol import RealtimeProtocol
from agent.local.reply_encoder import encode_reply
from agent.local.synthetic_voice import synthesize_voice
from agent.realtime.dialect import Dialect
from tests.local_helpers import tone


def test_rates_and_sample_sizes() -> None:
    rates = {name: (codec(name).rate, codec(name).sample_bytes) for name in CODECS}
    assert rates == {
        "pcm16": (24000, 2),
        "pcm16-16k": (16000, 2),
        "pcmu": (8000, 1),
        "pcma": (8000, 1),
    }


def test_decode_pcm16_and_reject_half_samples() -> None:
    samples = np.array([0, 1, -1, 32767, -32768], dtype=np.int16)
    decoded = codec("pcm16").decode(samples.astype("<i2").tobytes())
    assert np.array_equal(np.frombuffer(decoded, dtype="<i2"), samples)
    with pytest.raises(ValueError):
        codec("pcm16").decode(b"\x00\x01\x02")
    # The server tells the client in its own words.
    half = base64.b64encode(b"\x00\x01\x02").decode()
    append = {"type": "input_audio_buffer.append", "audio": half}
    (error,) = RealtimeProtocol(Dialect.GA).receive(json.dumps(append), 0.0)
    assert "whole 2-byte samples" in error["error"]["message"]


@pytest.mark.parametrize(("name", "decoder"), [("pcmu", ulaw_decode), ("pcma", alaw_decode)])
def test_decode_g711(name: str, decoder: object) -> None:
    wire = bytes(range(256))
    expected = np.frombuffer(decoder(wire), dtype="<i2")  # type: ignore[operator]
    assert np.array_equal(np.frombuffer(codec(name).decode(wire), dtype="<i2"), expected)


def _reply(ms: int, block: int) -> list[bytes]:
    samples = tone(ms, dbfs=-13)  # -16 on the old reference (tests/local_helpers.py)
    return [samples[i : i + block].astype("<i2").tobytes() for i in range(0, len(samples), block)]


@pytest.mark.parametrize("name", CODECS)
@pytest.mark.parametrize("block", [7, 1000, 48000])
def test_encode_reply_frames_any_input_into_fixed_chunks(name: str, block: int) -> None:
    wire = codec(name)
    chunks = list(encode_reply(_reply(1030, block), wire, 50))
    size = wire.rate * 50 // 1000 * wire.sample_bytes
    assert all(len(chunk) == size for chunk in chunks[:-1])
    assert 0 < len(chunks[-1]) <= size
    total = sum(len(chunk) for chunk in chunks) // wire.sample_bytes
    # Resampling to 8 kHz keeps the duration (the stream is flushed at the end).
    assert total == pytest.approx(wire.rate * 1.03, abs=2)
    pcm = b"".join(wire.decode(chunk) for chunk in chunks)
    steady = pcm[wire.rate // 10 * 2 : -wire.rate // 10 * 2]
    assert rms_dbfs(steady) == pytest.approx(-13, abs=0.5)  # the tone's level, kept


@pytest.mark.parametrize("name", CODECS)
def test_the_same_reply_encodes_to_the_same_bytes(name: str) -> None:
    voice = synthesize_voice("You said something. I am the local test agent.")
    pieces = [voice[i : i + 2400].astype("<i2").tobytes() for i in range(0, len(voice), 2400)]
    first = b"".join(encode_reply(pieces, codec(name), 50))
    assert first == b"".join(encode_reply(pieces, codec(name), 50))


def test_encode_reply_is_lazy() -> None:
    pulled: list[int] = []

    def source() -> object:
        for index in range(100):
            pulled.append(index)
            yield tone(100).astype("<i2").tobytes()

    stream = encode_reply(source(), codec("pcm16"), 50)  # type: ignore[arg-type]
    next(stream)
    assert len(pulled) == 1
