"""Streaming resampler: fidelity, alias rejection, delay accounting, input validation."""

from __future__ import annotations

import numpy as np
import pytest

from agent.audio import measure
from agent.audio.levels import rms_dbfs, tone
from agent.audio.pcm import MODEL_RATE, SIP_RATE, to_bytes
from agent.audio.resample import (
    DEFAULT_QUALITY,
    QUALITIES,
    QUALITY_FIGURES,
    StreamResampler,
    downsampler,
    measure_holdback,
    upsampler,
)


def samples(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.int64)


def band_limited(rate: int, n: int, hi_hz: float, seed: int = 1) -> np.ndarray:
    """Noise below hi_hz at rate, as float, scaled to about -20 dBFS."""
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    spectrum[np.fft.rfftfreq(n, 1 / rate) > hi_hz] = 0
    x = np.fft.irfft(spectrum, n)
    return x * 3000 / np.std(x)


def pcm16(x: np.ndarray) -> bytes:
    return to_bytes(np.round(x).astype(np.int16))


def test_factories_and_attributes() -> None:
    up, down = upsampler(), downsampler("hq")
    assert (up.in_rate, up.out_rate, up.quality) == (8000, 24000, DEFAULT_QUALITY)
    assert (down.in_rate, down.out_rate, down.quality) == (24000, 8000, "HQ")


@pytest.mark.parametrize("quality", [DEFAULT_QUALITY, "MQ"])
def test_tone_round_trip_in_20ms_frames(quality: str) -> None:
    pcm = tone(1000, 1000, SIP_RATE, -6.0)
    back = measure.roundtrip(quality, pcm)
    assert len(back) == len(pcm)  # flush drains everything soxr held back
    assert measure.find_lag(pcm, back, 3) == 0
    assert measure.roundtrip_snr_db(quality) >= 50.0


def test_output_is_sample_aligned_with_input() -> None:
    # Broadband probes have a unique correlation peak, so lag 0 here proves soxr trims its
    # own filter delay and the only latency is held-back audio (what delay_ms counts).
    n = SIP_RATE * 2
    probe = band_limited(SIP_RATE, n, 2800)
    assert measure.find_lag(pcm16(probe), measure.roundtrip(DEFAULT_QUALITY, pcm16(probe)), 40) == 0

    # Down alone: decimating a signal with nothing above 2.8 kHz is the ideal 8 kHz version.
    wide = band_limited(MODEL_RATE, n * 3, 2800)
    down = measure.stream_through(downsampler(), pcm16(wide))
    assert measure.find_lag(pcm16(wide[::3]), down, 40) == 0

    # Up alone: FFT zero-padding is the ideal band-limited interpolation of the probe.
    ideal = np.fft.irfft(np.fft.rfft(probe), n * 3) * 3
    up = measure.stream_through(upsampler(), pcm16(probe))
    core = slice(2400, n * 3 - 2400)  # the FFT reference wraps around at the ends
    assert measure.find_lag(pcm16(ideal[core]), pcm16(samples(up)[core]), 40) == 0


@pytest.mark.parametrize("in_rate,out_rate", [(SIP_RATE, MODEL_RATE), (MODEL_RATE, SIP_RATE)])
def test_frame_edges_leave_no_trace(in_rate: int, out_rate: int) -> None:
    # Framing must not change a single sample: 20 ms frames, ragged 7-sample chunks and one
    # big chunk all produce identical output.
    pcm = pcm16(band_limited(in_rate, in_rate, 3000))
    framed = measure.stream_through(StreamResampler(in_rate, out_rate), pcm, frame_ms=20)
    whole = StreamResampler(in_rate, out_rate)
    oneshot = whole.process(pcm) + whole.flush()
    ragged = StreamResampler(in_rate, out_rate)
    parts = [ragged.process(pcm[i : i + 14]) for i in range(0, len(pcm), 14)]
    ragged_out = b"".join(parts) + ragged.flush()
    assert len(framed) == len(pcm) * out_rate // in_rate
    assert framed == oneshot == ragged_out


@pytest.mark.parametrize("freq", measure.ALIAS_TEST_HZ)
def test_default_quality_rejects_aliases_by_60db(freq: int) -> None:
    assert measure.alias_rejection_db(DEFAULT_QUALITY, freq) >= 60.0


def test_quick_quality_does_not_filter_aliases() -> None:
    # Why the default is not QQ: a 6 kHz tone folds to 2 kHz at full level.
    assert measure.alias_rejection_db("QQ", 6000) < 1.0


def test_default_quality_is_least_delay_meeting_alias_rule() -> None:
    delays = {q: measure_holdback(SIP_RATE, MODEL_RATE, q).mean_ms for q in QUALITIES}
    passing = [q for q in QUALITIES if measure.worst_alias_rejection_db(q) >= 60.0]
    assert "QQ" not in passing
    assert min(passing, key=delays.__getitem__) == DEFAULT_QUALITY


@pytest.mark.parametrize("quality", QUALITIES)
def test_recorded_figures_match_measurement(quality: str) -> None:
    fig = QUALITY_FIGURES[quality]
    up = measure_holdback(SIP_RATE, MODEL_RATE, quality)
    down = measure_holdback(MODEL_RATE, SIP_RATE, quality)
    assert max(up.mean_ms, down.mean_ms) == pytest.approx(fig.delay_mean_ms, abs=0.5)
    assert max(up.max_ms, down.max_ms) == pytest.approx(fig.delay_max_ms, abs=0.5)
    assert measure.worst_alias_rejection_db(quality) == pytest.approx(fig.alias_rejection_db, abs=1)
    image = min(measure.image_rejection_db(quality, f) for f in (1000, 3000))
    assert image == pytest.approx(fig.image_rejection_db, abs=1)
    gain = min(
        measure.gain_db(quality, SIP_RATE, MODEL_RATE, 3400),
        measure.gain_db(quality, MODEL_RATE, SIP_RATE, 3400),
    )
    assert gain == pytest.approx(fig.gain_3400hz_db, abs=0.2)


@pytest.mark.parametrize("in_rate,out_rate", [(SIP_RATE, MODEL_RATE), (MODEL_RATE, SIP_RATE)])
def test_delay_ms_matches_click_emission_timing(in_rate: int, out_rate: int) -> None:
    # Independent of the held-back arithmetic: put clicks at many phases of soxr's block
    # cycle, feed 20 ms frames, and see in which frame each click comes out.
    frame = in_rate // 50
    n_frames = 400
    x = np.zeros(frame * n_frames)
    spacing = frame * 3 + 37  # co-prime-ish with the frame: clicks sample every phase
    clicks = np.arange(frame * 10, frame * (n_frames - 20), spacing)
    x[clicks] = 16000
    resampler = StreamResampler(in_rate, out_rate)
    pcm = pcm16(x)
    ends = []  # cumulative output samples after each frame
    total = 0
    for k in range(n_frames):
        total += len(resampler.process(pcm[k * frame * 2 : (k + 1) * frame * 2])) // 2
        ends.append(total)
    # Where each click lands in the output (deterministic, so a second run is the same).
    y = np.abs(samples(measure.stream_through(StreamResampler(in_rate, out_rate), pcm)))
    ratio = out_rate / in_rate
    latencies = []
    for i in clicks:
        guess = round(i * ratio)
        peak = guess - 8 + int(np.argmax(y[guess - 8 : guess + 9]))
        emitted_in = int(np.searchsorted(ends, peak, side="right"))
        latencies.append((emitted_in - i // frame) * 20.0)
    print(f"click latency mean {np.mean(latencies):.2f} ms, delay_ms {resampler.delay_ms:.2f}")
    assert np.mean(latencies) == pytest.approx(resampler.delay_ms, abs=2.0)
    assert max(latencies) <= resampler.max_delay_ms + 20.0
    assert resampler.delay_ms > 5.0  # soxr does hold audio back; 0 would mean a broken probe


def test_pending_ms_tracks_held_back_audio_and_flush_empties_it() -> None:
    up = upsampler()
    frame = bytes(320)
    seen = []
    for _ in range(50):
        up.process(frame)
        seen.append(up.pending_ms)
    assert max(seen) == pytest.approx(up.max_delay_ms, abs=0.1)
    assert min(seen) >= 0.0
    tail = up.flush()
    assert len(tail) == round(seen[-1] * MODEL_RATE / 1000) * 2
    assert up.pending_ms == 0.0


def test_stream_is_reusable_after_flush_and_reset_drops_held_audio() -> None:
    down = downsampler()
    loud = tone(1000, 100, MODEL_RATE, -6.0)
    first = down.process(loud) + down.flush()
    second = down.process(loud) + down.flush()
    assert first == second  # flush restarts the stream cleanly

    down.process(loud)
    down.reset()
    after = down.process(bytes(4800)) + down.flush()
    assert len(after) == 800 * 2  # 2400 samples at 24 kHz -> 800 at 8 kHz
    assert rms_dbfs(after) == -120.0  # nothing of the tone leaked past the reset


def test_empty_input_is_a_no_op() -> None:
    up = upsampler()
    assert up.process(b"") == b""
    assert up.pending_ms == 0.0


def test_rejects_odd_byte_count_with_clear_message() -> None:
    with pytest.raises(ValueError, match="odd byte count"):
        upsampler().process(b"\x00\x01\x02")


def test_rejects_non_bytes() -> None:
    with pytest.raises(TypeError, match="bytes-like"):
        upsampler().process("not audio")  # type: ignore[arg-type]


def test_rejects_oversized_chunk() -> None:
    with pytest.raises(ValueError, match="feed audio in frames"):
        upsampler().process(bytes(SIP_RATE * 61 * 2))


def test_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError, match="unknown soxr quality"):
        StreamResampler(8000, 24000, "best")
    with pytest.raises(ValueError, match="positive"):
        StreamResampler(0, 24000)
    with pytest.raises(TypeError, match="integers"):
        StreamResampler(8000.0, 24000)  # type: ignore[arg-type]
