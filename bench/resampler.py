"""Benchmark the soxr qualities for the 8k<->24k telephony/model resampling streams.

Usage: uv run python bench/resampler.py [--json PATH] [--frames N] [--repeats N]

Per quality and direction it reports CPU cost per 20 ms frame (through StreamResampler,
i.e. including PCM16 validation and bytes conversion), the audio soxr holds back (mean and
max, ms), the 1 kHz round-trip SNR, alias rejection (24k->8k: worst tone above 4 kHz) or
image rejection (8k->24k: worst of 1 and 3 kHz tones), and the gain at 3.4 kHz, the top of
the telephone band. Everything but the timing is deterministic.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import numpy as np
import soxr

from agent.audio import measure
from agent.audio.levels import SILENCE_DBFS
from agent.audio.pcm import MODEL_RATE, SIP_RATE
from agent.audio.resample import (
    DEFAULT_QUALITY,
    QUALITIES,
    StreamResampler,
    measure_holdback,
)

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "resampler.json"
DIRECTIONS = (("8k->24k", SIP_RATE, MODEL_RATE), ("24k->8k", MODEL_RATE, SIP_RATE))


def time_per_frame_us(
    quality: str, in_rate: int, out_rate: int, frames: int, repeats: int
) -> tuple[float, float]:
    """Mean and 99th-percentile wall time of one 20 ms process() call, in microseconds.

    soxr works in blocks, so most calls only buffer and a few do the filtering: the mean is
    the CPU budget, the p99 the worst hiccup the event loop sees. Best run of ``repeats``.
    """
    rng = np.random.default_rng(0)
    n = in_rate // 50
    # Noise at speech-ish level: soxr's cost does not depend on content, but avoid zeros.
    pcm = (rng.standard_normal(n * frames) * 3000).astype("<i2").tobytes()
    chunks = [pcm[i * n * 2 : (i + 1) * n * 2] for i in range(frames)]
    best: tuple[float, float] = (float("inf"), float("inf"))
    for _ in range(repeats):
        resampler = StreamResampler(in_rate, out_rate, quality)
        costs = np.empty(frames)
        clock = time.perf_counter_ns
        for i, chunk in enumerate(chunks):
            start = clock()
            resampler.process(chunk)
            costs[i] = clock() - start
        run_stats = (float(costs.mean()) / 1000, float(np.percentile(costs, 99)) / 1000)
        best = min(best, run_stats)
    return best


def _finite(value: float) -> float | None:
    return _round(value, 1) if math.isfinite(value) else None


def _round(value: float, digits: int) -> float:
    return round(value, digits) + 0.0  # + 0.0 turns -0.0 into 0.0 for the table and JSON


def run(frames: int, repeats: int) -> dict:
    rows = []
    for quality in QUALITIES:
        tone_snr = measure.roundtrip_snr_db(quality)
        band_snr = measure.roundtrip_snr_db(quality, measure.telephone_band_noise(2000))
        for name, in_rate, out_rate in DIRECTIONS:
            held = measure_holdback(in_rate, out_rate, quality)
            if out_rate < in_rate:
                rejection = measure.worst_alias_rejection_db(quality)
            else:
                rejection = min(measure.image_rejection_db(quality, f) for f in (1000, 3000))
            mean_us, p99_us = time_per_frame_us(quality, in_rate, out_rate, frames, repeats)
            rows.append(
                {
                    "quality": quality,
                    "direction": name,
                    "us_per_frame_mean": _round(mean_us, 1),
                    "us_per_frame_p99": _round(p99_us, 1),
                    "held_back_ms_mean": _round(held.mean_ms, 1),
                    "held_back_ms_max": _round(held.max_ms, 1),
                    # None when the round trip is bit-exact (infinite SNR; JSON has no inf).
                    "roundtrip_snr_db_1khz": _finite(tone_snr),
                    "roundtrip_snr_db_band": _finite(band_snr),
                    "alias_or_image_rejection_db": _round(rejection, 1),
                    "gain_db_3400hz": _round(measure.gain_db(quality, in_rate, out_rate, 3400), 2),
                }
            )
    return {
        "benchmark": "resampler",
        "frame_ms": 20,
        "frames_timed": frames,
        "repeats": repeats,
        "default_quality": DEFAULT_QUALITY,
        "environment": {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or platform.machine(),
            "python_soxr": soxr.__version__,
            "libsoxr": soxr.__libsoxr_version__,
            "numpy": np.__version__,
        },
        "rows": rows,
    }


_COLUMNS = (
    # (header, unit, row key, width)
    ("quality", "", "quality", 7),
    ("direction", "", "direction", 9),
    ("us/frame", "mean", "us_per_frame_mean", 8),
    ("p99", "us", "us_per_frame_p99", 6),
    ("held", "mean ms", "held_back_ms_mean", 7),
    ("held", "max ms", "held_back_ms_max", 7),
    ("RT SNR", "1kHz dB", "roundtrip_snr_db_1khz", 7),
    ("RT SNR", "band dB", "roundtrip_snr_db_band", 7),
    ("alias/img", "rej. dB", "alias_or_image_rejection_db", 9),
    ("3.4 kHz", "gain dB", "gain_db_3400hz", 7),
)


def _cell(value: object, width: int) -> str:
    if value is None:
        return f"{'exact':>{width}}"  # bit-exact round trip
    if isinstance(value, float):
        return f"{value:>{width}.1f}"
    return f"{value!s:<{width}}"


def format_table(result: dict) -> str:
    lines = [
        " ".join(f"{h:<{w}}" if i < 2 else f"{h:>{w}}" for i, (h, _, _, w) in enumerate(_COLUMNS)),
        " ".join(f"{u:<{w}}" if i < 2 else f"{u:>{w}}" for i, (_, u, _, w) in enumerate(_COLUMNS)),
    ]
    for row in result["rows"]:
        mark = " *" if row["quality"] == result["default_quality"] else ""
        lines.append(" ".join(_cell(row[key], w) for _, _, key, w in _COLUMNS) + mark)
    env = result["environment"]
    lines.append(
        f"* default quality. 'exact' = bit-exact round trip. Rejection is measured on the "
        f"int16 output of a {measure.TEST_LEVEL_DBFS:g} dBFS tone; "
        f"{measure.TEST_LEVEL_DBFS - SILENCE_DBFS:g} dB means it rounded to digital silence."
    )
    lines.append(
        f"python-soxr {env['python_soxr']} (libsoxr {env['libsoxr']}), numpy {env['numpy']}, "
        f"Python {env['python']}, {env['machine']}; timing: best of {result['repeats']} runs "
        f"of {result['frames_timed']} frames."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--frames", type=int, default=2000, help="20 ms frames per timing run")
    parser.add_argument("--repeats", type=int, default=5, help="timing runs (best is kept)")
    args = parser.parse_args(argv)
    result = run(args.frames, args.repeats)
    print(format_table(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
