"""Voice activity detection for the local realtime server's ``server_vad`` turn detection.

The detector works on the appended audio's own timeline (sample counts, never the wall
clock), so turn boundaries are reproducible from the audio alone. ``EnergyVad`` is a plain
frame-energy detector; anything implementing ``VoiceActivityDetector`` (the Silero model in
``silero_vad``) can replace it through the protocol's ``vad_factory``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import numpy as np

# The realtime API's threshold is a unitless 0..1 "activation" knob. For an energy detector we
# map it linearly onto frame level: 0 -> -70 dBFS (below telephone line noise, so anything
# counts as speech), 0.5 (the API default) -> -45 dBFS, 1 -> -20 dBFS (only loud speech).
_THRESHOLD_FLOOR_DBFS = -70.0
_THRESHOLD_SPAN_DB = 50.0
# Once speech has started a frame may dip this far below the onset level and still count as
# voiced, so the quiet gaps between syllables do not end a turn early.
_HANGOVER_DB = 6.0
_FRAME_MS = 10
# Consecutive voiced frames needed for an onset; rejects clicks and single-frame pops.
_ONSET_FRAMES = 3


def threshold_dbfs(threshold: float) -> float:
    """The frame level (dBFS) at which ``threshold`` (0..1) declares speech."""
    clamped = min(max(threshold, 0.0), 1.0)
    return _THRESHOLD_FLOOR_DBFS + _THRESHOLD_SPAN_DB * clamped


@dataclass(frozen=True)
class VadConfig:
    """The ``server_vad`` knobs the detector honours (defaults match the API's)."""

    threshold: float = 0.5
    prefix_padding_ms: int = 300
    silence_duration_ms: int = 200


class VadEvent(NamedTuple):
    """A turn boundary, as a sample index on the detector's own timeline.

    ``start`` is already moved back by the prefix padding and ``stop`` already includes the
    silence duration, matching what the realtime API reports as ``audio_start_ms`` and
    ``audio_end_ms``.
    """

    kind: Literal["start", "stop"]
    sample: int


class VoiceActivityDetector(Protocol):
    """Fed PCM16 mono samples in order; reports speech start/stop boundaries."""

    @property
    def speaking(self) -> bool: ...

    def process(self, samples: np.ndarray) -> list[VadEvent]: ...

    def close(self) -> None:
        """The detector is no longer needed (a pooled model goes back to its pool)."""
        ...


VadFactory = Callable[[int, VadConfig], VoiceActivityDetector]


class EnergyVad:
    """Frame-energy detector with onset debounce, hangover and a silence timeout."""

    def __init__(self, sample_rate: int, config: VadConfig) -> None:
        self._frame = sample_rate * _FRAME_MS // 1000
        self._padding = sample_rate * max(config.prefix_padding_ms, 0) // 1000
        self._silence = sample_rate * max(config.silence_duration_ms, 0) // 1000
        self._on_db = threshold_dbfs(config.threshold)
        self._off_db = self._on_db - _HANGOVER_DB
        self._pending = np.zeros(0, dtype=np.int16)
        self._consumed = 0  # samples already judged, i.e. the start of ``_pending``
        self._voiced_run = 0
        self._speaking = False
        self._last_voiced_end = 0

    @property
    def speaking(self) -> bool:
        return self._speaking

    def close(self) -> None:
        """Nothing to release: the detector is plain state."""

    def process(self, samples: np.ndarray) -> list[VadEvent]:
        events: list[VadEvent] = []
        data = np.concatenate([self._pending, samples.astype(np.int16, copy=False)])
        whole = len(data) // self._frame * self._frame
        for offset in range(0, whole, self._frame):
            frame_start = self._consumed + offset
            event = self._judge(data[offset : offset + self._frame], frame_start)
            if event is not None:
                events.append(event)
        self._pending = data[whole:].copy()
        self._consumed += whole
        return events

    def _judge(self, frame: np.ndarray, frame_start: int) -> VadEvent | None:
        level = _dbfs(frame)
        frame_end = frame_start + self._frame
        if not self._speaking:
            if level < self._on_db:
                self._voiced_run = 0
                return None
            self._voiced_run += 1
            if self._voiced_run < _ONSET_FRAMES:
                return None
            self._speaking = True
            self._last_voiced_end = frame_end
            onset = frame_end - self._voiced_run * self._frame
            return VadEvent("start", max(onset - self._padding, 0))
        if level >= self._off_db:
            self._last_voiced_end = frame_end
            return None
        if frame_end - self._last_voiced_end < self._silence:
            return None
        self._speaking = False
        self._voiced_run = 0
        return VadEvent("stop", self._last_voiced_end + self._silence)


def _dbfs(frame: np.ndarray) -> float:
    power = float(np.mean(np.square(frame, dtype=np.float64)))
    if power <= 0.0:
        return -math.inf
    return 10.0 * math.log10(power / (32768.0 * 32768.0))
