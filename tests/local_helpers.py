"""Shared helpers for the local realtime server tests: synthetic audio and session updates."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from agent.audio.g711 import alaw_encode, ulaw_encode
from agent.realtime.dialect import Dialect, audio_format

_UNSET: Any = object()


def tone(ms: int, rate: int = 24000, dbfs: float = -20.0, freq: float = 220.0) -> np.ndarray:
    """A harmonic tone (fundamental plus two overtones) at an RMS level of ``dbfs``."""
    t = np.arange(rate * ms // 1000) / rate
    wave = (
        np.sin(2 * np.pi * freq * t)
        + 0.5 * np.sin(2 * np.pi * 2 * freq * t)
        + 0.25 * np.sin(2 * np.pi * 3 * freq * t)
    )
    wave *= 10 ** (dbfs / 20) / np.sqrt(np.mean(wave**2))
    return np.round(wave * 32767).astype(np.int16)


def silence(ms: int, rate: int = 24000) -> np.ndarray:
    return np.zeros(rate * ms // 1000, dtype=np.int16)


def level_dbfs(samples: np.ndarray) -> float:
    power = float(np.mean(samples.astype(np.float64) ** 2))
    return -np.inf if power == 0 else 10 * np.log10(power / 32768**2)


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
