"""Shared helpers for the local realtime server tests: synthetic audio and session updates.

Levels are dBFS as ``agent.audio.levels`` measures them (AES17: a full-scale sine reads
0 dBFS). These tests once used a reference 3 dB lower (RMS against a full-scale square, so a
full-scale sine read -3 dBFS); where a level or threshold came from that reference, it is now
3 dB higher, which keeps its meaning, and a comment says so.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from agent.audio import levels
from agent.audio.g711 import alaw_encode, ulaw_encode
from agent.realtime.dialect import Dialect, audio_format

_UNSET: Any = object()


def tone(ms: int, rate: int = 24000, dbfs: float = -17.0, freq: float = 220.0) -> np.ndarray:
    """``agent.audio.levels.tone`` as int16 samples: a ``freq`` Hz sine at ``dbfs``.

    The default -17 dBFS is the -20 of the old reference: speech-like loudness.
    """
    return np.frombuffer(levels.tone(freq, ms, rate, dbfs), dtype="<i2").astype(np.int16)


def noise(count: int, dbfs: float, seed: int) -> np.ndarray:
    """``count`` samples of Gaussian noise at an RMS of ``dbfs``, as floats in PCM16 units."""
    sine_rms = levels.FULL_SCALE / np.sqrt(2)  # 0 dBFS in AES17
    return np.random.default_rng(seed).standard_normal(count) * sine_rms * 10 ** (dbfs / 20)


def silence(ms: int, rate: int = 24000) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def wire_audio(samples: np.ndarray, codec: str = "pcm16") -> str:
    """Base64 of ``samples`` in the session's input ``codec``."""
    data = samples.astype("<i2").tobytes()
    if codec == "pcmu":
        data = ulaw_encode(data)
    elif codec == "pcma":
        data = alaw_encode(data)
    return base64.b64encode(data).decode("ascii")


def append_events(
    samples: np.ndarray, rate: int = 24000, codec: str = "pcm16", frame_ms: int = 20
) -> list[dict[str, Any]]:
    """``input_audio_buffer.append`` events carrying ``samples`` in ``frame_ms`` frames."""
    step = rate * frame_ms // 1000
    return [
        {"type": "input_audio_buffer.append", "audio": wire_audio(samples[i : i + step], codec)}
        for i in range(0, len(samples), step)
    ]


def server_vad(**overrides: Any) -> dict[str, Any]:
    return {"type": "server_vad", **overrides}


def session_update(
    dialect: Dialect,
    *,
    turn_detection: Any = _UNSET,
    codec: str | None = None,
    modalities: list[str] | None = None,
    instructions: str | None = None,
) -> dict[str, Any]:
    """A ``session.update`` in the shape ``dialect`` expects, setting only what is given."""
    session: dict[str, Any] = {}
    if dialect is Dialect.GA:
        session["type"] = "realtime"
        audio: dict[str, Any] = {}
        if codec is not None:
            audio["input"] = {"format": audio_format(dialect, codec)}
            audio["output"] = {"format": audio_format(dialect, codec)}
        if turn_detection is not _UNSET:
            audio.setdefault("input", {})["turn_detection"] = turn_detection
        if audio:
            session["audio"] = audio
        if modalities is not None:
            session["output_modalities"] = modalities
    else:
        if codec is not None:
            session["input_audio_format"] = audio_format(dialect, codec)
            session["output_audio_format"] = audio_format(dialect, codec)
        if turn_detection is not _UNSET:
            session["turn_detection"] = turn_detection
        if modalities is not None:
            session["modalities"] = modalities
    if instructions is not None:
        session["instructions"] = instructions
    return {"type": "session.update", "session": session}
