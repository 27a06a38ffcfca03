"""The energy VAD on synthetic audio with known speech boundaries."""

from __future__ import annotations

import numpy as np
import pytest

from agent.local.vad import EnergyVad, VadConfig, VadEvent, threshold_dbfs
from tests.local_helpers import noise, silence, tone

RATE = 24000


def run(vad: EnergyVad, samples: np.ndarray, block: int = 480) -> list[VadEvent]:
    events: list[VadEvent] = []
    for start in range(0, len(samples), block):
        events += vad.process(samples[start : start + block])
    return events


def ms(sample: int) -> float:
    return sample * 1000 / RATE


def test_threshold_maps_onto_a_sensible_dbfs_range() -> None:
    assert threshold_dbfs(0.0) == -70
    assert threshold_dbfs(0.5) == -45
    assert threshold_dbfs(1.0) == -20
    assert threshold_dbfs(7) == threshold_dbfs(1.0)
    levels = [threshold_dbfs(t / 10) for t in range(11)]
    assert levels == sorted(levels)


@pytest.mark.parametrize(("padding", "silence_ms"), [(0, 200), (300, 500), (100, 800)])
def test_start_and_stop_follow_the_audio(padding: int, silence_ms: int) -> None:
    vad = EnergyVad(RATE, VadConfig(prefix_padding_ms=padding, silence_duration_ms=silence_ms))
    audio = np.concatenate([silence(1000), tone(1500), silence(1500)])
    events = run(vad, audio)
    assert [e.kind for e in events] == ["start", "stop"]
    assert abs(ms(events[0].sample) - (1000 - padding)) <= 50
    assert abs(ms(events[1].sample) - (2500 + silence_ms)) <= 50
    assert not vad.speaking


def test_results_do_not_depend_on_how_audio_is_chunked() -> None:
    audio = np.concatenate([silence(333), tone(777), silence(900), tone(250), silence(600)])
    runs = [run(EnergyVad(RATE, VadConfig()), audio, block) for block in (1, 97, 480, 24000)]
    assert all(events == runs[0] for events in runs)
    assert [e.kind for e in runs[0]] == ["start", "stop", "start", "stop"]


def test_pauses_shorter_than_the_silence_duration_do_not_split_a_turn() -> None:
    vad = EnergyVad(RATE, VadConfig(silence_duration_ms=500))
    audio = np.concatenate([tone(400), silence(300), tone(400), silence(800)])
    assert [e.kind for e in run(vad, audio)] == ["start", "stop"]


def test_clicks_and_quiet_noise_are_not_speech() -> None:
    vad = EnergyVad(RATE, VadConfig(threshold=0.5))
    # -57 and -7 dBFS: -60 and -10 on the old reference (tests/local_helpers.py).
    hiss = noise(RATE * 2, -57, seed=1).astype(np.int16)
    click = tone(20, dbfs=-7)
    audio = np.concatenate([hiss[:RATE], click, hiss[RATE:]])
    assert run(vad, audio) == []
    assert not vad.speaking


def test_threshold_decides_what_is_loud_enough() -> None:
    # -37 dBFS, -40 on the old reference: between the thresholds 0.8 and 0.3 stand for.
    quiet = np.concatenate([tone(600, dbfs=-37), silence(600)])
    assert run(EnergyVad(RATE, VadConfig(threshold=0.8)), quiet) == []
    assert [e.kind for e in run(EnergyVad(RATE, VadConfig(threshold=0.3)), quiet)] == [
        "start",
        "stop",
    ]


def test_speaking_reflects_an_open_turn() -> None:
    vad = EnergyVad(8000, VadConfig())
    vad.process(tone(300, 8000))
    assert vad.speaking
    vad.process(silence(300, 8000))
    assert not vad.speaking
