"""Levels: AES17 dBFS, the silence floor, tones, SNR."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.audio.levels import SILENCE_DBFS, is_silent, rms_dbfs, snr_db, tone


@pytest.mark.parametrize("dbfs", [0.0, -6.0, -20.0, -60.0])
def test_tone_reads_back_its_level(dbfs: float) -> None:
    pcm = tone(1000, 1000, 8000, dbfs)
    assert len(pcm) == 16000
    assert rms_dbfs(pcm) == pytest.approx(dbfs, abs=0.05)


def test_full_scale_square_wave_reads_plus_3db() -> None:
    square = np.tile(np.array([32767, -32767], dtype="<i2"), 400).tobytes()
    assert rms_dbfs(square) == pytest.approx(10 * math.log10(2), abs=0.01)


def test_silence_and_empty_hit_the_floor() -> None:
    assert rms_dbfs(bytes(320)) == SILENCE_DBFS == -120.0
    assert rms_dbfs(b"") == SILENCE_DBFS
    assert is_silent(bytes(320))
    assert is_silent(tone(440, 20, 8000, -55.0))
    assert not is_silent(tone(440, 20, 8000, -45.0))


def test_tone_frequency_is_right() -> None:
    x = np.frombuffer(tone(1250, 1000, 8000), "<i2").astype(float)
    assert np.argmax(np.abs(np.fft.rfft(x))) == 1250  # 1 Hz bins over one second


def test_tone_refuses_clipping_level() -> None:
    with pytest.raises(ValueError, match="clip"):
        tone(1000, 20, 8000, 1.0)


def test_snr() -> None:
    ref = tone(1000, 100, 8000, -6.0)
    assert snr_db(ref, ref) == math.inf
    noisy = (np.frombuffer(ref, "<i2") + np.int16(100)).astype("<i2").tobytes()
    # -6 dBFS sine power vs a constant error of 100: 10*log10((0.5*(32767*0.501)**2) / 100**2)
    assert snr_db(ref, noisy) == pytest.approx(41.2, abs=0.1)
    with pytest.raises(ValueError, match="equal"):
        snr_db(ref, ref[:-2])
