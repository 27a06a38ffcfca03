"""The stereo recording writer in memory: alignment of the two channels, the header patched
as the file grows, a stuck writer never blocking the media side, and the frame tap."""

from __future__ import annotations

import time
import wave
from pathlib import Path

import numpy as np
import pytest

from agent.observe import recording as recording_module
from agent.observe.recording import CallRecording, RecordingTap
from agent.observe.wav import GrowingWav


def _frame(value: int, samples: int = 160) -> bytes:
    return np.full(samples, value, dtype="<i2").tobytes()


def _channels(path: Path) -> tuple[np.ndarray, np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        assert wav.getnchannels() == 2 and wav.getsampwidth() == 2
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
        return data[0::2], data[1::2], wav.getframerate()


def test_a_tick_s_caller_and_agent_frames_land_side_by_side(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path / "call.wav", 8000)
    # Ticks 0-4: the engine pulls an agent frame each tick; the loop drains the caller's
    # frames of ticks 0-2 in one late batch, then tick 3's and 4's one by one.
    for tick in range(3):
        rec.agent_frame(_frame(100 + tick))
    rec.caller_frames([_frame(-100), _frame(-101), _frame(-102)])
    for tick in (3, 4):
        rec.agent_frame(_frame(100 + tick))
        rec.caller_frames([_frame(-100 - tick)])
    rec.close()
    assert rec.join()
    left, right, rate = _channels(tmp_path / "call.wav")
    assert rate == 8000
    assert left.reshape(5, 160)[:, 0].tolist() == [-100, -101, -102, -103, -104]
    assert right.reshape(5, 160)[:, 0].tolist() == [100, 101, 102, 103, 104]


def test_missing_caller_frames_are_silence_and_a_gap_is_kept(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path / "call.wav", 16000)
    for _ in range(4):
        rec.agent_frame(_frame(7, 320))
    # No caller frames for ticks 0-2 (no RTP yet), then tick 3's.
    rec.caller_frames([_frame(-9, 320)])
    rec.close()
    assert rec.join()
    left, right, rate = _channels(tmp_path / "call.wav")
    assert rate == 16000 and len(left) == 4 * 320
    assert left.reshape(4, 320)[:, 0].tolist() == [0, 0, 0, -9]
    assert set(right.tolist()) == {7}


def test_the_header_is_patched_while_the_file_grows(tmp_path: Path) -> None:
    path = tmp_path / "call.wav"
    rec = CallRecording(path, 8000)
    for tick in range(100):  # 2 s on the line
        rec.agent_frame(_frame(tick))
        rec.caller_frames([_frame(-tick)])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        # Read as a crash would leave it: the writer still running, never closed.
        with wave.open(str(path), "rb") as wav:
            if wav.getnframes() >= 100 * 160 - recording_module.CALLER_LAG_SLOTS * 160:
                break
        time.sleep(0.1)
    else:
        pytest.fail("the WAV header never covered the audio written")
    rec.close()
    assert rec.join()
    left, right, _ = _channels(path)
    assert len(left) == 100 * 160 and right[-1] == 99 and left[-1] == -99


def test_a_stuck_writer_drops_frames_instead_of_blocking(tmp_path: Path) -> None:
    rec = CallRecording(tmp_path / "call.wav", 8000)
    rec._limit = 5  # the queue bound, small enough to hit before the writer's first wake-up
    started = time.perf_counter()
    for _ in range(50):
        rec.agent_frame(_frame(1))
    assert time.perf_counter() - started < 0.05
    assert rec.dropped_frames >= 40
    rec.close()
    assert rec.join()


def test_the_tap_records_exactly_what_the_engine_pulls(tmp_path: Path) -> None:
    class Source:
        def __init__(self) -> None:
            self.n = 0

        def pull(self) -> bytes:
            self.n += 1
            return _frame(self.n)

        def stats(self) -> dict[str, int]:
            return {"frames_pulled": self.n}

    source = Source()
    rec = CallRecording(tmp_path / "call.wav", 8000)
    tap = RecordingTap(source, rec)
    pulled = [tap.pull() for _ in range(3)]
    assert pulled == [_frame(1), _frame(2), _frame(3)]
    assert tap.stats() == {"frames_pulled": 3}
    rec.close()
    assert rec.join()
    _, right, _ = _channels(tmp_path / "call.wav")
    assert right.reshape(3, 160)[:, 0].tolist() == [1, 2, 3]


def test_a_growing_wav_is_valid_at_every_patch(tmp_path: Path) -> None:
    path = tmp_path / "g.wav"
    wav_file = GrowingWav(path, 2, 8000)
    with wave.open(str(path), "rb") as wav:
        assert wav.getnframes() == 0
    wav_file.append(bytes(4 * 80))
    wav_file.patch()
    with wave.open(str(path), "rb") as wav:
        assert (wav.getnframes(), wav.getnchannels(), wav.getframerate()) == (80, 2, 8000)
    wav_file.close()
    assert wav_file.seconds == pytest.approx(0.01)
